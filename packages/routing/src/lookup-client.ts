/**
 * The lookup client: a lookup reads this node's own provider records, then asks the closest members of the view
 * with {@link runLookupStrategy}, yielding each provider the moment it is known. Lookups of one key are coalesced
 * and their result cached (a few seconds with providers, less without). Emits `lookup` and `failure`.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import type { AddressBook } from './address-book.ts'
import { SharedLookup } from './channel.ts'
import { DEFAULT_LOOKUP_COUNT, K, LOOKUP_HEDGE_MS } from './constants.ts'
import type { LookupSource, RouterEvents } from './events.ts'
import { type KadMessage, MessageType } from './kad-message.ts'
import { peerKadId } from './keys.ts'
import type { PeerRequests } from './peer-requests.ts'
import type { ProviderDatastore } from './provider-datastore.ts'
import { type KeyInfo, keyInfoOf } from './records.ts'
import type { LookupOptions, Provider } from './router.ts'
import {
  connectedHoldersFirst,
  type LookupOutcome,
  type LookupPeer,
  type LookupStrategyInit,
  runLookupStrategy
} from './strategy.ts'
import type { ClusterView } from './view.ts'

/** Options of {@link LookupClient}. */
export interface LookupClientInit {
  selfId: string
  view: ClusterView
  addressBook: AddressBook
  requests: PeerRequests
  datastore: ProviderDatastore
  alpha: number
  /** Peers that hold a key's records (its closest); connected ones among them are asked first. */
  replication: number
  requestTimeoutMs: number
  lookupCacheTtlMs: number
  missCacheTtlMs: number
  /** Dials a peer an answer names that is not in the view. */
  connect(peer: PeerId): void
  /**
   * Gossip mode: opens a connection to a member before it is asked, or returns undefined when one is open (see
   * {@link LookupStrategyInit.connect}).
   */
  open?(peer: PeerId): Promise<void> | undefined
  /** Gossip mode: whether `peer` can be asked without a dial (connected holders are asked first). */
  connected?(peer: PeerId): boolean
  /** Gossip mode: asks `peer` in a datagram, or returns undefined when it is to be asked on a stream. */
  askByDatagram?(peer: PeerId, message: KadMessage): Promise<KadMessage> | undefined
  /** Whether the router has closed (lookups then end). */
  closed(): boolean
  events: RouterEvents
  log: Logger
}

/** A peer a lookup may ask. */
interface Candidate extends LookupPeer {
  id: PeerId
}

interface CacheEntry {
  lookup: SharedLookup
  /** When the entry stops being reused, ms since the epoch; infinite while the lookup runs. */
  expires: number
}

/** Lookups with coalescing and a short cache. */
export class LookupClient {
  private readonly cache = new Map<string, CacheEntry>()

  private readonly init: LookupClientInit

  constructor(init: LookupClientInit) {
    this.init = init
  }

  /** Peers holding `key`, as {@link Router.lookup}. */
  lookup(key: string, options: LookupOptions = {}): AsyncIterable<Provider> {
    const count = options.count ?? DEFAULT_LOOKUP_COUNT
    const started = Date.now()
    let entry = this.cache.get(key)
    if (entry === undefined || entry.expires <= started || options.fresh === true) {
      entry = this.start(key, started)
    } else if (this.init.events.listenerCount('lookup') > 0) {
      this.report(key, entry.lookup, entry.lookup.done ? 'cache' : 'shared', started)
    }
    return entry.lookup.read(count, options.signal)
  }

  /** Forgets the cached result of `key` (it was withdrawn). */
  forget(key: string): void {
    this.cache.delete(key)
  }

  /** Drops expired cache entries. */
  sweep(): void {
    const now = Date.now()
    for (const [key, entry] of this.cache) if (entry.expires <= now) this.cache.delete(key)
  }

  private start(key: string, started: number): CacheEntry {
    const shared = new SharedLookup()
    const entry: CacheEntry = { lookup: shared, expires: Number.POSITIVE_INFINITY }
    this.cache.set(key, entry)
    let outcome: LookupOutcome | undefined
    this.run(key, shared)
      .then((done) => {
        outcome = done
      })
      .catch((err: unknown) => this.init.log.warn({ err, key }, 'lookup failed'))
      .finally(() => {
        shared.finish()
        const ttl = shared.providers.length > 0 ? this.init.lookupCacheTtlMs : this.init.missCacheTtlMs
        entry.expires = Date.now() + ttl
        this.report(key, shared, 'network', started, outcome)
      })
    return entry
  }

  /** Emits a `lookup` event once `lookup` has finished. */
  private report(
    key: string,
    lookup: SharedLookup,
    source: LookupSource,
    started: number,
    outcome?: LookupOutcome
  ): void {
    const { events } = this.init
    if (events.listenerCount('lookup') === 0) return
    lookup.whenDone(() => {
      const now = Date.now()
      const first = lookup.firstProviderAt
      events.emit('lookup', {
        key,
        source,
        durationMs: source === 'cache' ? 0 : now - started,
        providers: lookup.providers.length,
        ...(first === undefined ? {} : { firstProviderMs: Math.max(0, first - started) }),
        peersAsked: outcome?.asked ?? 0,
        rounds: outcome?.rounds ?? 0
      })
    })
  }

  /** Runs one lookup of `key` into `into`: local records first, then the closest peers; resolves what the lookup did. */
  private async run(key: string, into: SharedLookup): Promise<LookupOutcome> {
    const { init } = this
    const info = keyInfoOf(key)
    const emit = async (peer: PeerId, addresses: Multiaddr[]): Promise<void> => {
      // A PeerId caches its string form: one base58 encoding per provider, however often it is asked for.
      const id = peer.toString()
      if (id === init.selfId) return
      const known = addresses.length > 0 ? addresses : await init.addressBook.addressesOf(peer)
      const provider = init.view.toProvider(id, known)
      if (provider !== undefined) into.push(provider)
    }
    // Records of peers in the view (connected, live) first: a stopped node's record may linger.
    const local = [...init.datastore.providersOf(info.mhKey)].filter((peer) => peer !== init.selfId)
    for (const peer of connectedFirst(local, (p) => init.view.has(p))) await emit(peerIdFromString(peer), [])
    const { connected } = init
    const outcome = await runLookupStrategy<Candidate, KadMessage>({
      target: info.target,
      candidates: this.candidates(info.target),
      alpha: init.alpha,
      holders: init.replication,
      hedgeMs: LOOKUP_HEDGE_MS,
      ask: (peer) =>
        init.askByDatagram?.(peer.id, getProviders(info)) ??
        init.requests.request(peer.id, getProviders(info), init.requestTimeoutMs, 'lookup'),
      ...(init.open === undefined ? {} : { connect: (peer: Candidate) => init.open?.(peer.id) }),
      ...(connected === undefined ? {} : { connected: (peer: Candidate) => connected(peer.id) }),
      read: (_peer, answer) => this.read(answer, emit),
      onFailure: (peer, err) => {
        init.log.debug({ err, peer: peer.key, key }, 'lookup request failed')
        init.events.emit('failure', { operation: 'lookup-request', peer: peer.key, error: err })
      },
      stopped: init.closed
    })
    return outcome
  }

  /** The view's members closest to `target`, connected holders first in gossip mode. */
  private candidates(target: Uint8Array): Candidate[] {
    const closest = this.init.view.closest(target, K)
    const { connected } = this.init
    if (connected === undefined) return closest
    return connectedHoldersFirst(closest, this.init.replication, (peer) => connected(peer.id))
  }

  /** Emits the providers of an answer and returns the closer peers it names (dialling them). */
  private async read(
    answer: KadMessage,
    emit: (peer: PeerId, addresses: Multiaddr[]) => Promise<void>
  ): Promise<Candidate[]> {
    const { addressBook, connect } = this.init
    const providers = await addressBook.learn(answer.providers)
    for (const provider of connectedFirst(providers, (p) => this.init.view.has(p.id.toString())))
      await emit(provider.id, provider.addresses)
    const closer: Candidate[] = []
    for (const peer of await addressBook.learn(answer.closer)) {
      if (peer.addresses.length === 0) continue
      closer.push({ id: peer.id, key: peer.id.toString(), kad: peerKadId(peer.id) })
      connect(peer.id)
    }
    return closer
  }
}

/** A GET_PROVIDERS request for a key. */
function getProviders(info: KeyInfo): KadMessage {
  return { type: MessageType.GET_PROVIDERS, key: info.value, closer: [], providers: [] }
}

/** `items` with those `connected` says are connected first, each group in its order. */
export function connectedFirst<T>(items: readonly T[], connected: (item: T) => boolean): T[] {
  const first: T[] = []
  const rest: T[] = []
  for (const item of items) (connected(item) ? first : rest).push(item)
  return first.length === 0 || rest.length === 0 ? [...items] : [...first, ...rest]
}
