/**
 * `Libp2pRouter`: a Router on libp2p's Kademlia DHT, wire-compatible with Spegel (`/spegel/kad/1.0.0`,
 * sha2-256 raw CIDv1 keys). `@libp2p/kad-dht` runs as a DHT server and answers every peer, Spegel's included.
 * On the client side this router keeps a full view of the cluster (it connects to every DHT node it learns
 * of) and so needs no multi-hop query: it stores each provider record at the few peers closest to the key
 * and looks a key up by asking the closest peers in parallel, one round in the common case.
 *
 * This file only composes the parts, each in a file of its own: the libp2p node (`libp2p-node.ts`, patched by
 * `patches.ts`), the view (`view.ts`) and membership (`membership.ts`), connections and redials
 * (`connections.ts`), records (`records.ts`), the lookup client (`lookup-client.ts`, strategy in `strategy.ts`)
 * and server (`lookup-server.ts`), and the bootstrap loop (`bootstrap-loop.ts`).
 */
import { EventEmitter } from 'node:events'
import type { PrivateKey, Stream } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { type Logger, pino } from 'pino'
import { AddressBook } from './address-book.ts'
import type { BootstrapPeer, Bootstrapper } from './bootstrap.ts'
import { BootstrapLoop } from './bootstrap-loop.ts'
import { Connections } from './connections.ts'
import {
  BOOTSTRAP_UNREGISTER_TIMEOUT_MS,
  CONNECTION_PING_INTERVAL_MS,
  CONNECTION_PING_TIMEOUT_MS,
  DEFAULT_DHT_PROTOCOL,
  DEFAULT_LOOKUP_ALPHA,
  DEFAULT_REGISTRY_PORT,
  DEFAULT_REPLICATION,
  LOOKUP_CACHE_TTL_MS,
  MISS_CACHE_TTL_MS,
  PEER_EXCHANGE_INTERVAL_MS,
  PROVIDER_VALIDITY_MS,
  RECONCILE_INTERVAL_MS,
  REDIAL_EVERY_RECONCILES,
  REQUEST_TIMEOUT_MS
} from './constants.ts'
import type { RouterEventMap, RouterEvents } from './events.ts'
import { createRouterLibp2p, type RouterLibp2p, withoutPeerId } from './libp2p-node.ts'
import { startConnectionChecks } from './liveness.ts'
import { LookupClient } from './lookup-client.ts'
import { handleLookups } from './lookup-server.ts'
import { Membership } from './membership.ts'
import { loadOrCreatePeerKey } from './peer-key.ts'
import { PeerRequests } from './peer-requests.ts'
import { ProviderDatastore } from './provider-datastore.ts'
import { handleRecordStreams, Records } from './records.ts'
import { type Router, RouterClosedError } from './router.ts'
import { ClusterView, registryProtocol } from './view.ts'

/** Options of {@link createLibp2pRouter}. Every field is optional. */
export interface Libp2pRouterInit {
  /** Listen multiaddrs; default `/ip4/0.0.0.0/tcp/5001` and `/ip6/::/tcp/5001` (port {@link DEFAULT_ROUTER_PORT}). */
  listen?: string[]
  /** Addresses to announce instead of the listen addresses. */
  announce?: string[]
  /** Announce and accept loopback addresses (local clusters on 127.0.0.1). @default false */
  allowLoopback?: boolean
  /** Directory for the persistent peer key (`private.key`, created with mode 0600). Without it (and `privateKey`) the id is new on every start. */
  dataDir?: string
  /** The peer key to use (overrides `dataDir`). */
  privateKey?: PrivateKey
  /**
   * Port of this node's registry mirror, announced to peers; also assumed for peers that announce nothing (Spegel
   * peers assume their own). @default {@link DEFAULT_REGISTRY_PORT} (5000)
   */
  registryPort?: number
  /** Scheme of this node's registry mirror. @default 'http' */
  registryScheme?: 'http' | 'https'
  /** DHT protocol. @default {@link DEFAULT_DHT_PROTOCOL} ('/spegel/kad/1.0.0') */
  protocol?: string
  /** Where to find other nodes. Without one the node waits to be dialled. */
  bootstrapper?: Bootstrapper
  /** Peers that store each provider record. @default {@link DEFAULT_REPLICATION} (5) */
  replication?: number
  /** Peers asked in parallel per lookup round. @default {@link DEFAULT_LOOKUP_ALPHA} (3) */
  alpha?: number
  /** Longest wait for one peer's answer, in ms. @default {@link REQUEST_TIMEOUT_MS} (1 s) */
  requestTimeoutMs?: number
  /** Validity of provider records this node stores for others, in ms (Spegel's). @default {@link PROVIDER_VALIDITY_MS} (19 min) */
  providerValidityMs?: number
  /** How long lookups with providers are cached, in ms. @default {@link LOOKUP_CACHE_TTL_MS} (5 s) */
  lookupCacheTtlMs?: number
  /** How long lookups without providers are cached, in ms. @default {@link MISS_CACHE_TTL_MS} (500 ms) */
  missCacheTtlMs?: number
  /** Most open connections (a connection to every node of the cluster). @default {@link DEFAULT_MAX_CONNECTIONS} (1000) */
  maxConnections?: number
  /**
   * Inbound connections per second accepted from one host. Production nodes dial from distinct IPs and keep
   * libp2p's default; with `allowLoopback` (every node on 127.0.0.1) the default is lifted to
   * {@link LOOPBACK_INBOUND_CONNECTION_THRESHOLD}.
   */
  inboundConnectionThreshold?: number
  /** Structured logger; default silent. */
  logger?: Logger
}

/** A Router on libp2p, with a few extras for operators and tests. */
export interface Libp2pRouter extends Router {
  /** This node's peer id. */
  readonly peerId: string
  /** The underlying libp2p node, with its stock DHT service (for metrics, debugging and comparison; do not stop it directly). */
  readonly libp2p: Libp2p<{ dht: KadDHT; ping: Ping }>
  /** What the router reports (lookups, provides, withdrawals, peers joining and leaving, bootstrap rounds, failures). */
  readonly events: RouterEvents
  /** Multiaddrs this node announces, without `/p2p/`. */
  addresses(): string[]
  /** This node as a bootstrap entry (`{ id, addresses }`), for `/id` and bootstrap servers. */
  self(): BootstrapPeer
  /** Peer ids of the DHT nodes this node is connected to. */
  peers(): string[]
  /** Runs one bootstrap round now; resolves true when at least one bootstrap peer was reached. */
  bootstrap(): Promise<boolean>
  /** Number of provider records this node stores for the cluster. */
  providerRecords(): number
}

const silent = pino({ level: 'silent' })

/** The options of {@link createLibp2pRouter} with their defaults filled in. */
type Settings = Required<
  Pick<
    Libp2pRouterInit,
    | 'protocol'
    | 'allowLoopback'
    | 'registryPort'
    | 'registryScheme'
    | 'replication'
    | 'alpha'
    | 'requestTimeoutMs'
    | 'providerValidityMs'
    | 'lookupCacheTtlMs'
    | 'missCacheTtlMs'
  >
> & { log: Logger }

function settingsOf(init: Libp2pRouterInit): Settings {
  return {
    protocol: init.protocol ?? DEFAULT_DHT_PROTOCOL,
    allowLoopback: init.allowLoopback ?? false,
    registryPort: init.registryPort ?? DEFAULT_REGISTRY_PORT,
    registryScheme: init.registryScheme ?? 'http',
    replication: init.replication ?? DEFAULT_REPLICATION,
    alpha: init.alpha ?? DEFAULT_LOOKUP_ALPHA,
    requestTimeoutMs: init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    providerValidityMs: init.providerValidityMs ?? PROVIDER_VALIDITY_MS,
    lookupCacheTtlMs: init.lookupCacheTtlMs ?? LOOKUP_CACHE_TTL_MS,
    missCacheTtlMs: init.missCacheTtlMs ?? MISS_CACHE_TTL_MS,
    log: init.logger ?? silent
  }
}

/** Creates the libp2p node of a router with its settings. */
async function createNode(init: Libp2pRouterInit, settings: Settings, datastore: ProviderDatastore) {
  const privateKey =
    init.privateKey ?? (init.dataDir === undefined ? undefined : await loadOrCreatePeerKey(init.dataDir))
  return createRouterLibp2p({
    ...(init.listen === undefined ? {} : { listen: init.listen }),
    ...(init.announce === undefined ? {} : { announce: init.announce }),
    ...(privateKey === undefined ? {} : { privateKey }),
    ...(init.maxConnections === undefined ? {} : { maxConnections: init.maxConnections }),
    ...(init.inboundConnectionThreshold === undefined
      ? {}
      : { inboundConnectionThreshold: init.inboundConnectionThreshold }),
    allowLoopback: settings.allowLoopback,
    protocol: settings.protocol,
    datastore,
    providerValidityMs: settings.providerValidityMs,
    log: settings.log
  })
}

/** The parts of a router, built over one libp2p node. */
interface Parts {
  view: ClusterView
  connections: Connections
  requests: PeerRequests
  records: Records
  lookups: LookupClient
  membership: Membership
  bootstrap: BootstrapLoop
}

/** What every part shares. */
interface Shared {
  libp2p: RouterLibp2p
  settings: Settings
  datastore: ProviderDatastore
  events: RouterEvents
  shutdown: AbortSignal
  selfAddresses(): Multiaddr[]
  selfPeer(): BootstrapPeer
}

/** Builds the parts, each given what it uses. */
function buildParts(shared: Shared, bootstrapper: Bootstrapper | undefined): Parts {
  const { libp2p, settings, datastore, events, shutdown } = shared
  const { protocol, allowLoopback, requestTimeoutMs, log } = settings
  const selfId = libp2p.peerId.toString()
  const registry = { port: settings.registryPort, scheme: settings.registryScheme }
  const view = new ClusterView({ protocol, registry, allowLoopback, events, log })
  const connections = new Connections({ libp2p, protocol, view, shutdown, events, log })
  const requests = new PeerRequests(libp2p, protocol, view)
  const addressBook = new AddressBook({ libp2p, view, allowLoopback, log })
  const selfWirePeer = () => ({
    id: libp2p.peerId.toMultihash().bytes,
    multiaddrs: shared.selfAddresses().map((a) => a.bytes)
  })
  const records = new Records({
    ...{ libp2p, protocol, view, requestTimeoutMs, shutdown, events, log },
    replication: settings.replication,
    selfPeer: selfWirePeer
  })
  const lookups = new LookupClient({
    ...{ selfId, view, addressBook, requests, datastore, requestTimeoutMs, events, log },
    ...{
      alpha: settings.alpha,
      lookupCacheTtlMs: settings.lookupCacheTtlMs,
      missCacheTtlMs: settings.missCacheTtlMs
    },
    connect: (peer) => connections.connect(peer),
    closed: () => shutdown.aborted
  })
  const onJoined = (peers: ReadonlySet<string>): void => {
    records
      .handoff(peers)
      .catch((err: unknown) => log.warn({ err }, 'could not hand records to joining peers'))
  }
  const membership = new Membership({
    ...{
      libp2p,
      protocol,
      view,
      connections,
      requests,
      addressBook,
      requestTimeoutMs,
      shutdown,
      events,
      log
    },
    onJoined
  })
  const bootstrap = new BootstrapLoop({
    ...{ libp2p, view, connections, shutdown, events, log },
    ...(bootstrapper === undefined ? {} : { bootstrapper }),
    self: shared.selfPeer
  })
  return { view, connections, requests, records, lookups, membership, bootstrap }
}

/** Registers the protocols this node answers beyond the stock DHT: registry announcement, records, lookups. */
async function handleProtocols(shared: Shared, view: ClusterView): Promise<void> {
  const { libp2p, settings, datastore } = shared
  // Announced, never spoken: a stream opened on it is closed at once.
  await libp2p.handle(
    registryProtocol({ port: settings.registryPort, scheme: settings.registryScheme }),
    (s: Stream) => {
      s.close().catch((err: unknown) => s.abort(err as Error))
    }
  )
  await handleRecordStreams({
    libp2p,
    datastore,
    requestTimeoutMs: settings.requestTimeoutMs,
    log: settings.log
  })
  await handleLookups({ libp2p, datastore, view, log: settings.log })
}

/** Starts the periodic work: reconcile (with redials and growth-time peer exchange), sweeps and peer exchange. */
function startTimers(parts: Parts, datastore: ProviderDatastore, log: Logger): () => void {
  const { membership, connections, lookups } = parts
  let rounds = 0
  const reconciler = setInterval(() => {
    membership.reconcile().catch((err: unknown) => log.debug({ err }, 'reconcile failed'))
    if (rounds++ % REDIAL_EVERY_RECONCILES === REDIAL_EVERY_RECONCILES - 1 && connections.redialsWanted)
      connections.redialKnownPeers().catch((err: unknown) => log.debug({ err }, 'redial failed'))
    // While the view is still growing (a node starting, or joining a cluster), ask for peers every tick.
    if (membership.growing()) membership.exchangeWithRandomMember()
  }, RECONCILE_INTERVAL_MS)
  reconciler.unref()
  const maintenance = setInterval(() => {
    datastore.sweep()
    lookups.sweep()
    membership.exchangeWithRandomMember()
  }, PEER_EXCHANGE_INTERVAL_MS)
  maintenance.unref()
  return () => {
    clearInterval(reconciler)
    clearInterval(maintenance)
  }
}

/**
 * Creates and starts a libp2p router.
 * @throws when libp2p cannot listen on the addresses, or {@link InvalidPeerKeyError} when the peer key in
 *   `dataDir` is invalid.
 */
export async function createLibp2pRouter(init: Libp2pRouterInit = {}): Promise<Libp2pRouter> {
  const settings = settingsOf(init)
  const datastore = new ProviderDatastore({ validityMs: settings.providerValidityMs })
  const libp2p = await createNode(init, settings, datastore)
  await libp2p.start()
  const stopConnectionChecks = startConnectionChecks({
    libp2p,
    intervalMs: CONNECTION_PING_INTERVAL_MS,
    timeoutMs: CONNECTION_PING_TIMEOUT_MS,
    log: settings.log
  })
  const events: RouterEvents = new EventEmitter<RouterEventMap>()
  const shutdown = new AbortController()
  const selfId = libp2p.peerId.toString()
  const selfAddresses = (): Multiaddr[] => libp2p.getMultiaddrs().map(withoutPeerId)
  const selfPeer = (): BootstrapPeer => ({ id: selfId, addresses: selfAddresses().map((a) => a.toString()) })
  const shared: Shared = {
    libp2p,
    settings,
    datastore,
    events,
    shutdown: shutdown.signal,
    selfAddresses,
    selfPeer
  }
  const parts = buildParts(shared, init.bootstrapper)
  parts.membership.start()
  await handleProtocols(shared, parts.view)
  const stopTimers = startTimers(parts, datastore, settings.log)
  if (init.bootstrapper !== undefined)
    parts.bootstrap.loop().catch((err: unknown) => settings.log.error({ err }, 'bootstrap loop ended'))

  const check = (): void => {
    if (shutdown.signal.aborted) throw new RouterClosedError()
  }
  const close = async (): Promise<void> => {
    if (shutdown.signal.aborted) return
    shutdown.abort()
    stopTimers()
    stopConnectionChecks()
    parts.requests.closeAll()
    parts.membership.stop()
    const bootstrapper = init.bootstrapper
    await bootstrapper
      ?.unregister?.(selfPeer(), { signal: AbortSignal.timeout(BOOTSTRAP_UNREGISTER_TIMEOUT_MS) })
      .catch(() => {})
    await bootstrapper?.close?.()
    await libp2p.stop()
  }

  return {
    peerId: selfId,
    libp2p,
    events,
    addresses: () => selfAddresses().map((a) => a.toString()),
    self: selfPeer,
    peers: () => parts.view.ids(),
    providerRecords: () => datastore.recordCount(),
    async bootstrap() {
      check()
      return parts.bootstrap.once()
    },
    async advertise(keys) {
      check()
      await parts.records.advertise(keys)
    },
    async withdraw(keys) {
      check()
      for (const key of keys) parts.lookups.forget(key)
      await parts.records.withdraw(keys)
    },
    lookup(key, options) {
      check()
      return parts.lookups.lookup(key, options)
    },
    async ready() {
      check()
      return parts.view.size > 0
    },
    close
  }
}
