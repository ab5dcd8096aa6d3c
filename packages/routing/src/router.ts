/**
 * The `Router` interface: advertise the keys a node holds, and find the peers that hold a key.
 * Implementations: {@link createLibp2pRouter} (Kademlia, Spegel-compatible) and {@link createMemoryNetwork}.
 */
export { NoArbiterError, RouterClosedError } from './errors.ts'

/** A peer that holds a key. */
export interface Provider {
  /** The peer's id (a libp2p peer id for the libp2p router). */
  id: string
  /** The peer's addresses, as multiaddr strings (`/ip4/10.0.0.5/tcp/5001`). */
  addresses: string[]
  /** Base URL of the peer's registry mirror, without trailing slash: `http://10.0.0.5:5000`. */
  registryUrl: string
  /**
   * True when the router holds a connection to the peer now (a live node), false when it only has a record of it
   * (possibly stale: the node may have stopped). Undefined when the router cannot tell. Callers try connected
   * providers first.
   */
  connected?: boolean
}

/** Options of {@link Router.lookup}. */
export interface LookupOptions {
  /** Stop after this many providers. Default 4. */
  count?: number
  /** Ends the lookup early. */
  signal?: AbortSignal
  /**
   * Ask the network anew, even when a recent result of this key is cached or a lookup of it is under way (the cache
   * keeps hits a few seconds and misses 500 ms): for a caller that polls a key it expects to appear. Default false.
   */
  fresh?: boolean
}

/** Options of {@link Router.claim}. */
export interface ClaimOptions {
  /** Only ask who holds the claim; claim nothing. Default false. */
  peek?: boolean
  /** Ends the claim early (it rejects with the signal's reason). */
  signal?: AbortSignal
}

/**
 * What {@link Router.claim} learnt: this node holds the claim (it was first, or held it already), or another node
 * does (`holder`; undefined only for a peek when nobody holds it). `waiting`: other nodes that claimed it after the
 * holder (the earliest few, earliest first) — they wait for the holder's bytes and relay what they receive.
 */
export type ClaimAnswer = { won: true } | { won: false; holder?: Provider; waiting?: Provider[] }

/**
 * Advertises keys (digests and `registry/repository:tag` references) and finds who holds them.
 * All methods reject with `RouterClosedError` after {@link Router.close}.
 */
export interface Router {
  /** Announces that this node holds `keys`. Resolves when the announcements have been sent. */
  advertise(keys: readonly string[]): Promise<void>
  /** Stops announcing `keys`, and tells the peers that hold the records, where they understand it. */
  withdraw(keys: readonly string[]): Promise<void>
  /**
   * Peers holding `key`, each yielded the moment it is known, deduplicated, never this node. Ends when no
   * candidate is left, `count` providers were yielded, or `signal` aborts.
   */
  lookup(key: string, options?: LookupOptions): AsyncIterable<Provider>
  /**
   * Optional: a first-come claim on `key`, decided by one node, the key's arbiter (the libp2p router's: the
   * kadmirror member closest to the key, or this node when it is closer). The first node to claim holds the claim
   * for a fixed time (10 s by default); every other node that claims meanwhile is told which node holds it. Nodes
   * whose views of the cluster differ may ask different arbiters, so two may hold a claim on the same key. Used by
   * the mirror's flash-crowd election (one node fetches a blob nobody has); routers without it keep the election
   * on claim records.
   * @throws {NoArbiterError} when no arbiter answered; the signal's reason when it aborts.
   */
  claim?(key: string, options?: ClaimOptions): Promise<ClaimAnswer>
  /** True once the node knows at least one peer (it can advertise and look up). */
  ready(): Promise<boolean>
  /** Leaves the network and releases everything. Idempotent. */
  close(): Promise<void>
}
