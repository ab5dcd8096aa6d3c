/**
 * `Libp2pRouter`: a Router on libp2p's Kademlia DHT, wire-compatible with Spegel (`/spegel/kad/1.0.0`,
 * sha2-256 raw CIDv1 keys). `@libp2p/kad-dht` runs as a DHT server and answers every peer, Spegel's included.
 * On the client side this router keeps a full view of the cluster (it connects to every DHT node it learns
 * of) and so needs no multi-hop query: it stores each provider record at the few peers closest to the key
 * and looks a key up by asking the closest peers in parallel, one round in the common case.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type {
  ComponentLogger,
  Connection,
  IdentifyResult,
  Logger as Libp2pLogger,
  PeerId,
  PrivateKey,
  Stream
} from '@libp2p/interface'
import { type KadDHT, kadDHT, type PeerInfoMapper } from '@libp2p/kad-dht'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromMultihash, peerIdFromString } from '@libp2p/peer-id'
import { type Ping, ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { lpStream, pbStream } from '@libp2p/utils'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import * as Digest from 'multiformats/hashes/digest'
import { type Logger, pino } from 'pino'
import { toString as bytesToString } from 'uint8arrays/to-string'
import type { BootstrapPeer, Bootstrapper } from './bootstrap.ts'
import { SharedLookup } from './channel.ts'
import {
  ADVERTISE_BATCH_SIZE,
  ADVERTISE_PEER_CONCURRENCY,
  BOOTSTRAP_INTERVAL_MS,
  BOOTSTRAP_MAX_BACKOFF_MS,
  BOOTSTRAP_MIN_BACKOFF_MS,
  DEFAULT_DHT_PROTOCOL,
  DEFAULT_LOOKUP_ALPHA,
  DEFAULT_LOOKUP_COUNT,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REGISTRY_PORT,
  DEFAULT_REPLICATION,
  DEFAULT_ROUTER_PORT,
  K,
  LOOKUP_CACHE_TTL_MS,
  MISS_CACHE_TTL_MS,
  PEER_EXCHANGE_INTERVAL_MS,
  PROVIDER_VALIDITY_MS,
  REQUEST_TIMEOUT_MS
} from './constants.ts'
import { FrameChannel } from './frames.ts'
import {
  decodeMessage,
  encodeMessage,
  type KadMessage,
  KadMessageCodec,
  MAX_MESSAGE_BYTES,
  MessageType,
  type WirePeer
} from './kad-message.ts'
import { compareDistance, kadId, keyToCid, peerKadId } from './keys.ts'
import { startConnectionChecks } from './liveness.ts'
import { loadOrCreatePeerKey } from './peer-key.ts'
import { ProviderDatastore } from './provider-datastore.ts'
import { RedialSchedule } from './redials.ts'
import { type LookupOptions, type Provider, type Router, RouterClosedError } from './router.ts'
import { Sessions } from './sessions.ts'
import { useHalfWindowUpdates } from './yamux-window.ts'

/**
 * How a kadmirror node announces its registry mirror: it handles `<this>/<scheme>/<port>` (for example
 * `/kadmirror/registry/1.0.0/http/5000`), so its peers read the scheme and port from the protocols identify lists,
 * with no stream of their own (a stream per pair of nodes while a cluster forms). Spegel nodes announce nothing.
 */
export const REGISTRY_INFO_PROTOCOL = '/kadmirror/registry/1.0.0'
/** kadmirror's protocol to drop provider records at once instead of waiting for them to expire. */
export const WITHDRAW_PROTOCOL = '/kadmirror/withdraw/1.0.0'
/**
 * kadmirror's protocol to store many provider records of the sender in one stream: one frame per key
 * multihash, the sender's addresses known from its connection. Stock ADD_PROVIDER costs the receiver a peer
 * store write per record; Spegel peers, which do not speak this, get stock ADD_PROVIDER messages.
 */
export const PROVIDE_PROTOCOL = '/kadmirror/provide/1.0.0'
/**
 * kadmirror's lookup protocol: GET_PROVIDERS messages on a reused stream, answered from the provider index
 * alone — provider ids without addresses and no closer peers, since every node knows the cluster — and FIND_NODE
 * for peer exchange, answered from the view with the addresses identify gave. The stock answers cost the
 * answering node a peer-store read for each provider and for 20 closer peers; Spegel peers, which do not speak
 * this, are asked on the DHT protocol.
 */
export const LOOKUP_PROTOCOL = '/kadmirror/lookup/1.0.0'
/**
 * A lookup stream with no request for this long is closed by the answering side, in ms. Opening a stream costs a
 * round trip of protocol negotiation before the request, so lookup streams are kept for a while: a pull asks the
 * same few peers many times in a row.
 */
const LOOKUP_STREAM_IDLE_MS = 90_000
/** How long the asking side keeps an unused lookup stream, in ms (below {@link LOOKUP_STREAM_IDLE_MS}). */
const LOOKUP_SESSION_IDLE_MS = 60_000
/**
 * How long a stream used for peer exchange is kept, in ms. Peer exchange asks random peers, a few times a
 * minute; on the lookup sessions it left a stream open to more than half the cluster after a mesh formed (at 100
 * nodes 0.7 MiB of heap per node), to peers the node may never look anything up from.
 */
const EXCHANGE_SESSION_IDLE_MS = 1_000
/** The answer a node sends once it has handled every frame of a provide or withdraw stream. */
const RECORDS_ACK = new TextEncoder().encode('ok')
/** Time a hedged lookup waits for a peer before also asking the next closest, in ms. */
export const LOOKUP_HEDGE_MS = 15
/** Debounce of the work done when peers join (handing them records, asking them for peers), in ms. */
const JOIN_DEBOUNCE_MS = 200
/** Longest time a dial started by the router may take, in ms. */
const DIAL_TIMEOUT_MS = 5_000
/** How often each connection is checked with a ping, in ms (libp2p's monitor default, 10 s, costs N pings per 10 s per node). */
const CONNECTION_PING_INTERVAL_MS = 60_000
/** A connection whose ping takes longer is closed, in ms. */
const CONNECTION_PING_TIMEOUT_MS = 20_000
/** How long identify may take on a new connection, in ms (libp2p's default of 5 s is short for a busy node). */
const IDENTIFY_TIMEOUT_MS = 15_000
/** Least time between two extra identify runs on one connected peer missing from the view, in ms. */
const REIDENTIFY_INTERVAL_MS = 30_000
/** How often connected peers missing from the view are looked for, in ms. */
const RECONCILE_INTERVAL_MS = 2_000
/**
 * After the view last grew, how long peers are asked for more peers on every reconcile tick, in ms. Longer than
 * the pause in growth while dials yield to smaller ids ({@link DIAL_YIELD_MS}, up to twice that).
 */
const VIEW_GROWTH_WINDOW_MS = 10_000
/** Longest wait between redials of a known DHT peer that is not connected, in ms. */
const REDIAL_MAX_BACKOFF_MS = 5 * 60_000
/** Failed redials after which a peer is forgotten (it left the cluster). */
const MAX_REDIAL_FAILURES = 8
/** Dials to newly learnt peers run at once. */
const DIAL_CONCURRENCY = 16
/**
 * How long a node waits before dialling a learnt peer with a smaller id, in ms (plus up to as much again at
 * random). While a cluster forms, both nodes of a pair learn of each other at about the same time; the one with
 * the smaller id dials at once and the other only if no connection came by then, so a pair rarely dials twice.
 */
const DIAL_YIELD_MS = 1_500

/** Options of {@link createLibp2pRouter}. Every field is optional. */
export interface Libp2pRouterInit {
  /** Listen multiaddrs; default `/ip4/0.0.0.0/tcp/5001` and `/ip6/::/tcp/5001`. */
  listen?: string[]
  /** Addresses to announce instead of the listen addresses. */
  announce?: string[]
  /** Announce and accept loopback addresses (local clusters on 127.0.0.1); default false. */
  allowLoopback?: boolean
  /** Directory for the persistent peer key (`private.key`, created with mode 0600). Without it (and `privateKey`) the id is new on every start. */
  dataDir?: string
  /** The peer key to use (overrides `dataDir`). */
  privateKey?: PrivateKey
  /** Port of this node's registry mirror, announced to peers; also assumed for peers that announce nothing. Default 5000. */
  registryPort?: number
  /** Scheme of this node's registry mirror; default `http`. */
  registryScheme?: 'http' | 'https'
  /** DHT protocol; default `/spegel/kad/1.0.0`. */
  protocol?: string
  /** Where to find other nodes. Without one the node waits to be dialled. */
  bootstrapper?: Bootstrapper
  /** Peers that store each provider record; default 5. */
  replication?: number
  /** Peers asked in parallel per lookup round; default 3. */
  alpha?: number
  /** Longest wait for one peer's answer, in ms; default 1000. */
  requestTimeoutMs?: number
  /** Validity of provider records this node stores for others, in ms; default 19 min (Spegel's). */
  providerValidityMs?: number
  /** How long lookups with providers are cached, in ms; default 5000. */
  lookupCacheTtlMs?: number
  /** How long lookups without providers are cached, in ms; default 500. */
  missCacheTtlMs?: number
  /** Most open connections; default 1000 (a connection to every node of the cluster). */
  maxConnections?: number
  /**
   * Inbound connections per second accepted from one host. Production nodes dial from distinct IPs and keep
   * libp2p's default; with `allowLoopback` (every node on 127.0.0.1) the default is lifted to 100 000.
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

interface Member {
  id: PeerId
  kad: Uint8Array
  /** Speaks {@link PROVIDE_PROTOCOL} (a kadmirror node, not a Spegel one). */
  batches: boolean
  /** Speaks {@link LOOKUP_PROTOCOL}. */
  lookups: boolean
  /** The addresses it listens on, from identify; empty when unknown (then read from the peer store). */
  addresses: Multiaddr[]
}

interface KeyInfo {
  mh: Uint8Array
  mhKey: string
  target: Uint8Array
}

interface Candidate {
  id: PeerId
  key: string
  kad: Uint8Array
  /** `reading`: its answer arrived and is being processed; `slow`: no answer within the hedge time. */
  state: 'new' | 'asking' | 'slow' | 'reading' | 'done' | 'failed'
}

interface RegistryInfo {
  port: number
  scheme: 'http' | 'https'
}

/** The protocol id that announces a registry mirror at `scheme` and `port`. */
function registryProtocol(info: RegistryInfo): string {
  return `${REGISTRY_INFO_PROTOCOL}/${info.scheme}/${info.port}`
}

/**
 * The registry mirror a peer announces among its protocols: undefined when it announces none, an Error when the
 * announcement is malformed (a scheme other than http or https, a port outside 1..65535).
 */
function announcedRegistry(protocols: readonly string[]): RegistryInfo | Error | undefined {
  const prefix = `${REGISTRY_INFO_PROTOCOL}/`
  const announced = protocols.find((p) => p.startsWith(prefix))
  if (announced === undefined) return undefined
  const match = /^(https?)\/([1-9][0-9]{0,4})$/.exec(announced.slice(prefix.length))
  const port = Number(match?.[2])
  if (match === null || port > 65535)
    return new Error(`${announced} is not ${prefix}<http|https>/<port 1..65535>`)
  return { scheme: match[1] as 'http' | 'https', port }
}

const silent = pino({ level: 'silent' })

/** A libp2p logger that does nothing; its scopes are itself. */
const quietLibp2pLogger: Libp2pLogger = Object.assign(() => {}, {
  error: () => {},
  trace: () => {},
  enabled: false,
  newScope: (): Libp2pLogger => quietLibp2pLogger
})

/**
 * The logger libp2p's components get: libp2p's own debug logger when `DEBUG` is set (for example
 * `DEBUG=libp2p:*`), else one that does nothing. The default creates three debug loggers for every connection
 * and every stream, enabled or not: at 100 nodes in one process they were an eighth of what lookups left on the
 * heap, and looking up whether a terminal has colours was 2 % of the CPU of forming the mesh.
 */
function libp2pComponentLogger(): ComponentLogger {
  if ((process.env.DEBUG ?? '') !== '') return defaultLogger()
  return { forComponent: () => quietLibp2pLogger }
}

function isLoopback(address: Multiaddr): boolean {
  const first = address.getComponents()[0]
  if (first === undefined) return false
  return (
    (first.name === 'ip4' && (first.value ?? '').startsWith('127.')) ||
    (first.name === 'ip6' && first.value === '::1')
  )
}

/**
 * Whether `err`, or an error it wraps (`cause`, `errors`), is the process running out of file descriptors: a node
 * needs one per connection, so one per cluster member.
 */
export function isOutOfFileDescriptors(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 5) return false
  const { code, cause, errors } = err as { code?: unknown; cause?: unknown; errors?: unknown }
  if (code === 'EMFILE' || code === 'ENFILE') return true
  if (isOutOfFileDescriptors(cause, depth + 1)) return true
  return Array.isArray(errors) && errors.some((inner) => isOutOfFileDescriptors(inner, depth + 1))
}

/** How often kad-dht's closest peers are tagged in the peer store, in ms (kad-dht's default: 5 s). */
const CLOSEST_PEER_TAG_INTERVAL_MS = 60_000

/** Least time between two warnings that the process is out of file descriptors, in ms. */
const DESCRIPTOR_WARNING_INTERVAL_MS = 60_000

function withoutPeerId(address: Multiaddr): Multiaddr {
  const components = address.getComponents().filter((c) => c.name !== 'p2p')
  return multiaddr(components.map((c) => `/${c.name}${c.value === undefined ? '' : `/${c.value}`}`).join(''))
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(done, ms)
    timer.unref()
    function done(): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Runs `task` over `items` with at most `concurrency` at once. */
async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<void>
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++] as T)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

/** The `count` members closest to `target`, closest first. */
function closest(members: Iterable<Member>, target: Uint8Array, count: number): Member[] {
  const top: Member[] = []
  for (const member of members) {
    if (top.length === count && compareDistance(member.kad, (top[count - 1] as Member).kad, target) >= 0)
      continue
    let i = top.length
    while (i > 0 && compareDistance(member.kad, (top[i - 1] as Member).kad, target) < 0) i--
    top.splice(i, 0, member)
    if (top.length > count) top.pop()
  }
  return top
}

/**
 * Three changes to the stock kad-dht service, which has no options for them, so its parts are reached by name; if a
 * kad-dht version lacks them, the stock behaviour stays and a warning says so.
 *
 * - Its routing-table refresh is switched off: random-walk queries for every bucket at start and every 5 min, each
 *   a multi-hop stock query. This router keeps its own full view of the cluster (peer exchange, redials), and the
 *   stock table that answers Spegel peers is fed by connections; the refresh only adds load (at 100 nodes in one
 *   process it dominated the time to form the mesh).
 * - A new contact with an open connection joins the stock table without the ping kad-dht sends first (a
 *   ping-protocol stream to check the peer is online; the peer has just connected and been identified): a stream
 *   per pair of nodes while a cluster forms. Contacts without a connection are still pinged, and so are old
 *   contacts when a bucket is full.
 * - Its 20 closest peers are tagged in the peer store (so the connection manager keeps them) once a minute instead
 *   of every 5 s: each round builds two peer sets and decodes their ids from strings, a sixth of what an idle node
 *   allocated, and this router keeps a connection to every member anyway.
 */
function tuneStockDht(dht: unknown, isConnected: (peer: PeerId) => boolean, log: Logger): void {
  const refresh = (dht as { routingTableRefresh?: { afterStart?: unknown; refreshTable?: unknown } })
    .routingTableRefresh
  if (refresh === undefined || typeof refresh.refreshTable !== 'function') {
    log.warn('kad-dht has no routingTableRefresh: its periodic refresh stays on')
  } else {
    refresh.afterStart = async () => {}
    refresh.refreshTable = () => {}
  }
  type Verify = (contact: { peerId: PeerId }, options?: unknown) => Promise<boolean>
  const table = (
    dht as { routingTable?: { kb?: { verify?: Verify }; closestPeerTagger?: { refreshInterval?: unknown } } }
  ).routingTable
  const tagger = table?.closestPeerTagger
  if (typeof tagger?.refreshInterval !== 'number') {
    log.warn(
      'kad-dht has no routingTable.closestPeerTagger.refreshInterval: its closest peers are tagged every 5 s'
    )
  } else {
    tagger.refreshInterval = CLOSEST_PEER_TAG_INTERVAL_MS
  }
  const buckets = table?.kb
  const verify = buckets?.verify
  if (buckets === undefined || typeof verify !== 'function') {
    log.warn('kad-dht has no routingTable.kb.verify: new contacts are pinged before they join its table')
    return
  }
  buckets.verify = async (contact, options) =>
    isConnected(contact.peerId) || verify.call(buckets, contact, options)
}

/**
 * Creates and starts a libp2p router.
 * @throws when libp2p cannot listen on the addresses, or the peer key in `dataDir` is invalid.
 */
export async function createLibp2pRouter(init: Libp2pRouterInit = {}): Promise<Libp2pRouter> {
  const log = init.logger ?? silent
  const protocol = init.protocol ?? DEFAULT_DHT_PROTOCOL
  const allowLoopback = init.allowLoopback ?? false
  const registryPort = init.registryPort ?? DEFAULT_REGISTRY_PORT
  const registryScheme = init.registryScheme ?? 'http'
  const replication = init.replication ?? DEFAULT_REPLICATION
  const alpha = init.alpha ?? DEFAULT_LOOKUP_ALPHA
  const requestTimeoutMs = init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS
  const lookupCacheTtlMs = init.lookupCacheTtlMs ?? LOOKUP_CACHE_TTL_MS
  const missCacheTtlMs = init.missCacheTtlMs ?? MISS_CACHE_TTL_MS
  const privateKey =
    init.privateKey ?? (init.dataDir === undefined ? undefined : await loadOrCreatePeerKey(init.dataDir))
  const datastore = new ProviderDatastore({ validityMs: init.providerValidityMs ?? PROVIDER_VALIDITY_MS })

  const peerInfoMapper: PeerInfoMapper = (peer) =>
    allowLoopback ? peer : { ...peer, multiaddrs: peer.multiaddrs.filter((address) => !isLoopback(address)) }

  useHalfWindowUpdates()
  const libp2p = await createLibp2p({
    start: false,
    logger: libp2pComponentLogger(),
    ...(privateKey === undefined ? {} : { privateKey }),
    datastore,
    addresses: {
      listen: init.listen ?? [
        `/ip4/0.0.0.0/tcp/${DEFAULT_ROUTER_PORT}`,
        `/ip6/::/tcp/${DEFAULT_ROUTER_PORT}`
      ],
      ...(init.announce === undefined ? {} : { announce: init.announce }),
      announceFilter: (addresses) =>
        allowLoopback ? addresses : addresses.filter((address) => !isLoopback(address))
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // yamux's keep-alive pings every connection every 30 s only to measure its round-trip time (a failed ping
    // closes nothing): with a connection to every node, N frames per 30 s per node. libp2p's connection monitor
    // pings every connection at the same moment. Both are off; the router's own checks (liveness.ts) ping each
    // connection once a minute, spread over the minute, and close the ones that do not answer.
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionMonitor: { enabled: false },
    connectionManager: {
      maxConnections: init.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      ...(init.inboundConnectionThreshold !== undefined
        ? { inboundConnectionThreshold: init.inboundConnectionThreshold }
        : allowLoopback
          ? { inboundConnectionThreshold: 100_000, maxIncomingPendingConnections: 1000 }
          : {})
    },
    services: {
      identify: identify({ timeout: IDENTIFY_TIMEOUT_MS }),
      ping: ping(),
      dht: kadDHT({
        protocol,
        clientMode: false,
        peerInfoMapper,
        // The stock routing table (K = 20 per bucket) serves FIND_NODE and GET_PROVIDERS answers, which carry
        // up to a bucket's size of closer peers: keep it at K, or every answer lists the whole cluster. This
        // router's own full view is `members`.
        // This router keeps its own view with peer exchange and never stores its own records, so the
        // stock self-query and reprovider only clean up: run them rarely.
        querySelfInterval: 10 * 60_000,
        reprovide: {
          validity: init.providerValidityMs ?? PROVIDER_VALIDITY_MS,
          interval: 60_000,
          threshold: 0
        }
      })
    }
  })

  tuneStockDht(libp2p.services.dht, (peer) => libp2p.getConnections(peer).length > 0, log)
  await libp2p.start()
  const stopConnectionChecks = startConnectionChecks({
    libp2p,
    intervalMs: CONNECTION_PING_INTERVAL_MS,
    timeoutMs: CONNECTION_PING_TIMEOUT_MS,
    log
  })

  const self = libp2p.peerId
  const selfId = self.toString()
  const members = new Map<string, Member>()
  const registryInfo = new Map<string, RegistryInfo>()
  /** Peers whose invalid registry announcement was logged already. */
  const invalidRegistry = new Set<string>()
  const advertised = new Set<string>()
  const keyInfos = new Map<string, KeyInfo>()
  const lookups = new Map<string, { lookup: SharedLookup; expires: number }>()
  const dialing = new Set<string>()
  const joined = new Set<string>()
  const shutdown = new AbortController()
  let closed = false
  let joinTimer: NodeJS.Timeout | undefined
  let lastGrowth = Date.now()

  const check = (): void => {
    if (closed) throw new RouterClosedError()
  }

  /** The multihash and Kademlia id of a key; kept for advertised keys, which are sent again at every reprovide. */
  const keyInfo = (key: string): KeyInfo => {
    let info = keyInfos.get(key)
    if (info === undefined) {
      const mh = keyToCid(key).multihash.bytes
      info = { mh, mhKey: bytesToString(mh, 'base32'), target: kadId(mh) }
      if (advertised.has(key)) keyInfos.set(key, info)
    }
    return info
  }

  const selfAddresses = (): Multiaddr[] => libp2p.getMultiaddrs().map(withoutPeerId)

  const registryUrl = (peer: string, addresses: readonly Multiaddr[]): string | undefined => {
    const info = registryInfo.get(peer)
    for (const address of addresses) {
      if (!allowLoopback && isLoopback(address)) continue
      const first = address.getComponents()[0]
      if (first?.value === undefined || (first.name !== 'ip4' && first.name !== 'ip6')) continue
      const host = first.name === 'ip6' ? `[${first.value}]` : first.value
      return `${info?.scheme ?? registryScheme}://${host}:${info?.port ?? registryPort}`
    }
    return undefined
  }

  const toProvider = (peer: string, addresses: readonly Multiaddr[]): Provider | undefined => {
    const url = registryUrl(peer, addresses)
    if (url === undefined) return undefined
    return { id: peer, addresses: addresses.map((a) => a.toString()), registryUrl: url }
  }

  // --- wire helpers -----------------------------------------------------------------------------

  /** Request streams kept open per peer (see sessions.ts). */
  const sessions = new Sessions((peer, signal) => libp2p.dialProtocol(peer, protocol, { signal }))

  /** Request streams on the lookup protocol, for kadmirror peers. */
  const openLookupStream = (peer: PeerId, signal: AbortSignal): Promise<Stream> =>
    libp2p.dialProtocol(peer, LOOKUP_PROTOCOL, { signal })
  const lookupSessions = new Sessions(openLookupStream, LOOKUP_SESSION_IDLE_MS)
  /** Short-lived streams on the lookup protocol for peer exchange with kadmirror peers. */
  const exchangeSessions = new Sessions(openLookupStream, EXCHANGE_SESSION_IDLE_MS)

  /** Parses the peers of an answer, skipping malformed entries and this node; merges their addresses into the peer store. */
  const learnPeers = async (
    peers: readonly WirePeer[]
  ): Promise<Array<{ id: PeerId; addresses: Multiaddr[] }>> => {
    const out: Array<{ id: PeerId; addresses: Multiaddr[] }> = []
    for (const peer of peers) {
      try {
        const id = peerIdFromMultihash(Digest.decode(peer.id))
        if (id.equals(self)) continue
        const addresses = peer.multiaddrs
          .map((bytes) => multiaddr(bytes))
          .filter((a) => allowLoopback || !isLoopback(a))
        // The peer store is slow to write; the peers this node is connected to are in it already.
        if (addresses.length > 0 && !members.has(id.toString()))
          await libp2p.peerStore.merge(id, { multiaddrs: addresses })
        out.push({ id, addresses })
      } catch (err) {
        log.debug({ err }, 'ignoring a malformed peer in a DHT answer')
      }
    }
    return out
  }

  const addressesOf = async (peer: PeerId): Promise<Multiaddr[]> => {
    const member = members.get(peer.toString())
    if (member !== undefined && member.addresses.length > 0) return member.addresses
    try {
      const addresses = (await libp2p.peerStore.get(peer)).addresses.map((a) => a.multiaddr)
      if (member !== undefined) member.addresses = addresses
      return addresses
    } catch {
      return []
    }
  }

  // --- view of the cluster ----------------------------------------------------------------------

  let lastDescriptorWarning = Number.NEGATIVE_INFINITY
  /**
   * Logs a failed dial: at debug level, or as a warning (at most once a minute) when the process is out of file
   * descriptors, which otherwise leaves a node's view short with nothing but debug lines to say why.
   */
  const dialFailed = (err: unknown, peer: string, message: string): void => {
    if (!isOutOfFileDescriptors(err)) {
      log.debug({ err, peer }, message)
      return
    }
    if (Date.now() - lastDescriptorWarning < DESCRIPTOR_WARNING_INTERVAL_MS) return
    lastDescriptorWarning = Date.now()
    log.warn(
      { err, peer },
      'cannot open more connections: the process is out of file descriptors (a node needs one per cluster member; raise its open-files limit, such as LimitNOFILE)'
    )
  }

  /** Learnt peers with a smaller id, waiting for their own dial before this node dials them. */
  const yielding = new Set<string>()
  /** When unconnected DHT peers (dropped, or learnt but not reached) are dialled again. */
  const redials = new RedialSchedule<PeerId>({
    baseMs: RECONCILE_INTERVAL_MS * 2,
    maxMs: REDIAL_MAX_BACKOFF_MS,
    maxFailures: MAX_REDIAL_FAILURES
  })
  /**
   * Whether a redial round is wanted: a peer disconnected, or a learnt peer could not be dialled. The round reads
   * every record of the peer store, so it runs only then, or while redials are pending.
   */
  let redialWanted = false

  const connect = (peer: PeerId, yielded = false): void => {
    const key = peer.toString()
    if (
      closed ||
      peer.equals(self) ||
      members.has(key) ||
      dialing.has(key) ||
      libp2p.getConnections(peer).length > 0
    )
      return
    if (!yielded && key < selfId) {
      if (yielding.has(key)) return
      yielding.add(key)
      const timer = setTimeout(
        () => {
          yielding.delete(key)
          connect(peer, true)
        },
        DIAL_YIELD_MS * (1 + Math.random())
      )
      timer.unref()
      return
    }
    if (dialing.size >= DIAL_CONCURRENCY * 8) {
      // Too many dials at once (a cluster forming): the next redial round dials it.
      redials.unreached(key, peer, false)
      redialWanted = true
      return
    }
    dialing.add(key)
    libp2p
      .dial(peer, { signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
      .then(() => redials.reached(key))
      .catch((err: unknown) => {
        dialFailed(err, key, 'could not dial a learnt peer')
        if (closed) return
        redials.unreached(key, peer, true)
        redialWanted = true
      })
      .finally(() => dialing.delete(key))
  }

  /** Asks a peer for the nodes it knows closest to a random target, and connects to them. */
  const exchangePeers = async (peer: PeerId): Promise<void> => {
    const target = new Uint8Array(32)
    crypto.getRandomValues(target)
    const viaLookup = members.get(peer.toString())?.lookups === true
    const answer = await (viaLookup ? exchangeSessions : sessions).request(
      peer,
      { type: MessageType.FIND_NODE, key: target, closer: [], providers: [] },
      requestTimeoutMs * 5
    )
    for (const { id } of await learnPeers(answer.closer)) connect(id)
  }

  /** Takes a connected peer into the view when it speaks the DHT protocol, and learns its registry port. */
  const admit = (peerId: PeerId, protocols: readonly string[], addresses: Multiaddr[] = []): void => {
    if (closed || libp2p.getConnections(peerId).length === 0) return
    const key = peerId.toString()
    const registry = announcedRegistry(protocols)
    if (registry instanceof Error) {
      if (!invalidRegistry.has(key)) {
        invalidRegistry.add(key)
        log.warn(
          { err: registry, peer: key },
          'peer announced an invalid registry; assuming our registry port'
        )
      }
    } else if (registry !== undefined) {
      registryInfo.set(key, registry)
    }
    if (!protocols.includes(protocol) || members.has(key)) return
    members.set(key, {
      id: peerId,
      kad: peerKadId(peerId),
      batches: protocols.includes(PROVIDE_PROTOCOL),
      lookups: protocols.includes(LOOKUP_PROTOCOL),
      addresses
    })
    lastGrowth = Date.now()
    joined.add(key)
    clearTimeout(joinTimer)
    joinTimer = setTimeout(onJoined, JOIN_DEBOUNCE_MS)
    joinTimer.unref()
  }

  const onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    if (event.detail.connection.status === 'open')
      admit(event.detail.peerId, event.detail.protocols, event.detail.listenAddrs)
  }

  /**
   * Connected peers by id, kept from connect and disconnect events: `libp2p.getPeers()` decodes every peer id from
   * its string key, too much to call every few seconds on every node of a cluster in one process.
   */
  const connected = new Map<string, PeerId>()
  const onConnect = (event: CustomEvent<PeerId>): void => {
    connected.set(event.detail.toString(), event.detail)
  }

  /** When identify was last run again on a connected peer missing from the view, ms since the epoch. */
  const reidentified = new Map<string, number>()

  /**
   * Admits connected peers whose identify event was missed (identify raced a duplicate connection), and runs
   * identify again, at most every 30 s, on connections where it failed (a busy node times out).
   */
  const reconcile = async (): Promise<void> => {
    if (connected.size === members.size) return
    for (const [key, peer] of connected) {
      if (members.has(key)) continue
      let protocols: string[] = []
      try {
        protocols = (await libp2p.peerStore.get(peer)).protocols
      } catch {
        // not in the peer store yet
      }
      if (protocols.includes(protocol)) {
        admit(peer, protocols)
        continue
      }
      const connection = libp2p.getConnections(peer)[0]
      if (connection === undefined || (reidentified.get(key) ?? 0) > Date.now() - REIDENTIFY_INTERVAL_MS)
        continue
      reidentified.set(key, Date.now())
      libp2p.services.identify
        .identify(connection, { signal: AbortSignal.timeout(requestTimeoutMs * 10) })
        .then((result) => admit(peer, result.protocols))
        .catch((err: unknown) => log.debug({ err, peer: key }, 'identify failed again'))
    }
    for (const key of reidentified.keys()) if (members.has(key)) reidentified.delete(key)
  }

  /** Dials the DHT peers this node knows of but is not connected to, so the view stays complete (see redials.ts). */
  const redialKnownPeers = async (): Promise<void> => {
    redialWanted = false
    const known = (await libp2p.peerStore.all({ filters: [(p) => p.protocols.includes(protocol)] })).map(
      (peer) => [peer.id.toString(), peer.id] as const
    )
    const { dial, forget } = redials.due(
      known,
      (key, id) => key === selfId || members.has(key) || libp2p.getConnections(id).length > 0,
      (key) => dialing.has(key)
    )
    for (const id of forget) await libp2p.peerStore.delete(id).catch(() => {})
    for (const [key, id] of dial) {
      dialing.add(key)
      libp2p
        .dial(id, { signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
        .then(
          () => redials.reached(key),
          (err: unknown) => {
            dialFailed(err, key, 'could not redial a peer')
            redials.failed(key)
          }
        )
        .finally(() => dialing.delete(key))
    }
  }

  const onDisconnect = (event: CustomEvent<PeerId>): void => {
    const key = event.detail.toString()
    if (libp2p.getConnections(event.detail).length > 0) return
    redialWanted = true
    connected.delete(key)
    members.delete(key)
    sessions.drop(event.detail)
    lookupSessions.drop(event.detail)
    exchangeSessions.drop(event.detail)
  }

  /** Hands the records of advertised keys to peers that joined and are now among the closest, and asks them for peers. */
  const onJoined = (): void => {
    const fresh = [...joined].filter((key) => members.has(key))
    joined.clear()
    if (closed || fresh.length === 0) return
    for (const key of fresh.slice(0, 4)) {
      const member = members.get(key)
      if (member !== undefined)
        exchangePeers(member.id).catch((err: unknown) =>
          log.debug({ err, peer: key }, 'peer exchange failed')
        )
    }
    if (advertised.size === 0) return
    const wanted = new Set(fresh)
    announce([...advertised], wanted).catch((err: unknown) =>
      log.warn({ err }, 'could not hand records to joining peers')
    )
  }

  /**
   * Closes extra connections to a peer (both nodes dialled at once), keeping one both sides agree on: one that
   * the node with the smaller id dialled. Of several dialled by one node, that node keeps the oldest. Each extra
   * connection costs both nodes memory, pings and identify runs.
   */
  const onConnectionOpen = (event: CustomEvent<Connection>): void => {
    const peer = event.detail.remotePeer
    const open = libp2p.getConnections(peer).filter((c) => c.status === 'open')
    if (open.length < 2) return
    const remote = peer.toString()
    const selfIsSmaller = selfId < remote
    const byPreferred = open.filter((c) => (c.direction === 'outbound') === selfIsSmaller)
    const kept = byPreferred.length > 0 ? byPreferred : open
    const extra = open.filter((c) => !kept.includes(c))
    // Only the dialling node can tell its own connections apart (by age); the other leaves them be.
    if ((kept[0] as Connection).direction === 'outbound' && kept.length > 1) {
      const oldest = kept.reduce((a, b) => (b.timeline.open < a.timeline.open ? b : a))
      extra.push(...kept.filter((c) => c !== oldest))
    }
    for (const connection of extra) {
      connection
        .close({ signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
        .catch((err: unknown) => connection.abort(err as Error))
    }
  }

  libp2p.addEventListener('peer:identify', onIdentify)
  libp2p.addEventListener('peer:connect', onConnect)
  libp2p.addEventListener('peer:disconnect', onDisconnect)
  libp2p.addEventListener('connection:open', onConnectionOpen)
  for (const peer of libp2p.getPeers()) connected.set(peer.toString(), peer)

  // Announced, never spoken: a stream opened on it is closed at once.
  await libp2p.handle(registryProtocol({ port: registryPort, scheme: registryScheme }), (stream: Stream) => {
    stream.close().catch((err: unknown) => stream.abort(err as Error))
  })

  /** Handles a stream of key multihash frames from a peer, applying `apply` to each, then acknowledges. */
  const handleRecords =
    (name: string, apply: (mhKey: string, sender: string) => void) =>
    async (stream: Stream, connection: { remotePeer: PeerId }): Promise<void> => {
      const sender = connection.remotePeer.toString()
      const frames = lpStream(stream, { maxDataLength: 128 })
      try {
        while (true) {
          const frame = await frames
            .read({ signal: AbortSignal.timeout(requestTimeoutMs * 10) })
            .catch((err: unknown) => {
              if (stream.remoteWriteStatus !== 'writable') return undefined
              throw err
            })
          if (frame === undefined) break
          apply(bytesToString(frame.subarray(), 'base32'), sender)
        }
        await frames.write(RECORDS_ACK)
        await stream.close()
      } catch (err) {
        log.warn({ err, peer: sender }, `invalid ${name} stream`)
        stream.abort(err as Error)
      }
    }

  await libp2p.handle(
    WITHDRAW_PROTOCOL,
    handleRecords('withdraw', (mhKey, sender) => datastore.deleteProvider(mhKey, sender))
  )
  await libp2p.handle(
    PROVIDE_PROTOCOL,
    handleRecords('provide', (mhKey, sender) => datastore.putProvider(mhKey, sender, Date.now()))
  )

  /** Provider ids as multihash bytes, for lookup answers (a few hundred peers at most). */
  const idBytes = new Map<string, Uint8Array>()
  const idBytesOf = (peer: string): Uint8Array => {
    let bytes = idBytes.get(peer)
    if (bytes === undefined) {
      bytes = peerIdFromString(peer).toMultihash().bytes
      if (idBytes.size > 10_000) idBytes.clear()
      idBytes.set(peer, bytes)
    }
    return bytes
  }

  await libp2p.handle(
    LOOKUP_PROTOCOL,
    (stream: Stream) => {
      // Requests are answered as their frames arrive, in order; the stream closes after an idle spell or when
      // the asker closes its side.
      const close = (): void => {
        stream.close().catch((err: unknown) => stream.abort(err as Error))
      }
      const idle = setTimeout(close, LOOKUP_STREAM_IDLE_MS)
      idle.unref()
      const channel = new FrameChannel(stream, MAX_MESSAGE_BYTES, {
        frame: (bytes) => {
          idle.refresh()
          const message = decodeMessage(bytes)
          const answer: KadMessage = { type: message.type, closer: [], providers: [] }
          if (message.type === MessageType.GET_PROVIDERS && message.key !== undefined) {
            answer.key = message.key
            answer.providers = datastore
              .providersOf(bytesToString(message.key, 'base32'))
              .map((peer) => ({ id: idBytesOf(peer), multiaddrs: [] }))
          } else if (message.type === MessageType.FIND_NODE && message.key !== undefined) {
            // Peer exchange, answered from the view (the stock handler reads the peer store for every peer).
            answer.key = message.key
            answer.closer = closest(members.values(), kadId(message.key), K)
              .filter((m) => m.addresses.length > 0)
              .map((m) => ({ id: m.id.toMultihash().bytes, multiaddrs: m.addresses.map((a) => a.bytes) }))
          }
          // A peer that asks faster than it reads its answers is not read from until they drain.
          if (!channel.send(encodeMessage(answer)) && stream.readStatus === 'readable') {
            stream.pause()
            stream.addEventListener('drain', () => stream.readStatus === 'paused' && stream.resume(), {
              once: true
            })
          }
        },
        end: (error) => {
          clearTimeout(idle)
          if (error === undefined) {
            close()
            return
          }
          if (stream.status === 'open') {
            log.debug({ err: error }, 'lookup stream ended')
            stream.abort(error)
          }
        }
      })
    },
    { maxInboundStreams: 16 }
  )

  /** Sends key multihashes to a peer on a record protocol and waits for its acknowledgement. */
  const sendRecords = async (
    recordProtocol: string,
    peer: PeerId,
    mhs: readonly Uint8Array[]
  ): Promise<void> => {
    const signal = AbortSignal.any([shutdown.signal, AbortSignal.timeout(requestTimeoutMs * 10 + mhs.length)])
    const stream = await libp2p.dialProtocol(peer, recordProtocol, { signal })
    try {
      const frames = lpStream(stream, { maxDataLength: 128 })
      for (let i = 0; i < mhs.length; i += ADVERTISE_BATCH_SIZE) {
        await frames.writeV(mhs.slice(i, i + ADVERTISE_BATCH_SIZE), { signal })
      }
      await stream.close({ signal })
      await frames.read({ signal })
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  // --- advertising ------------------------------------------------------------------------------

  /** Sends stock ADD_PROVIDER messages for `mhs` to one peer (a Spegel node), all on one stream, and waits until it has stored them. */
  const sendProviderRecords = async (peer: PeerId, mhs: readonly Uint8Array[]): Promise<void> => {
    const selfPeer = { id: self.toMultihash().bytes, multiaddrs: selfAddresses().map((a) => a.bytes) }
    const signal = AbortSignal.any([shutdown.signal, AbortSignal.timeout(requestTimeoutMs * 10 + mhs.length)])
    const stream = await libp2p.dialProtocol(peer, protocol, { signal })
    try {
      const messages = pbStream(stream).pb(KadMessageCodec)
      for (let i = 0; i < mhs.length; i += ADVERTISE_BATCH_SIZE) {
        const batch = mhs
          .slice(i, i + ADVERTISE_BATCH_SIZE)
          .map(
            (key): KadMessage => ({ type: MessageType.ADD_PROVIDER, key, closer: [], providers: [selfPeer] })
          )
        await messages.writeV(batch, { signal })
      }
      // ADD_PROVIDER has no answer; a node handles the messages of a stream in order, so the answer to a
      // trailing PING says every record before it is stored.
      await messages.write({ type: MessageType.PING, closer: [], providers: [] }, { signal })
      await messages.read({ signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  /** The multihashes of `keys` grouped by the members that hold their records (the `replication` closest), only `onlyTo` when given. */
  const groupByHolder = (
    infos: Iterable<KeyInfo>,
    onlyTo?: ReadonlySet<string>
  ): Array<{ holder: Member; mhs: Uint8Array[] }> => {
    const groups = new Map<string, { holder: Member; mhs: Uint8Array[] }>()
    for (const info of infos) {
      for (const holder of closest(members.values(), info.target, replication)) {
        const id = holder.id.toString()
        if (onlyTo !== undefined && !onlyTo.has(id)) continue
        let group = groups.get(id)
        if (group === undefined) {
          group = { holder, mhs: [] }
          groups.set(id, group)
        }
        group.mhs.push(info.mh)
      }
    }
    return [...groups.values()]
  }

  /** Sends the records of `keys` to their closest peers (only to `onlyTo`, when given). */
  const announce = async (keys: readonly string[], onlyTo?: ReadonlySet<string>): Promise<void> => {
    if (members.size === 0) return
    const groups = groupByHolder(keys.map(keyInfo), onlyTo)
    let failures = 0
    await forEachConcurrently(groups, ADVERTISE_PEER_CONCURRENCY, async ({ holder, mhs }) => {
      try {
        if (holder.batches) await sendRecords(PROVIDE_PROTOCOL, holder.id, mhs)
        else await sendProviderRecords(holder.id, mhs)
      } catch (err) {
        failures++
        log.debug({ err, peer: holder.id.toString() }, 'could not send provider records')
      }
    })
    if (failures > 0) log.warn({ failures, peers: groups.length }, 'some peers did not take provider records')
  }

  // --- lookups ----------------------------------------------------------------------------------

  /** Runs one lookup of `key` into `into`: local records first, then the closest peers, round by round. */
  const runLookup = async (key: string, into: SharedLookup): Promise<void> => {
    const info = keyInfo(key)
    // A PeerId caches its string form: one base58 encoding per provider, however often it is asked for.
    const emit = async (peer: PeerId, addresses: Multiaddr[]): Promise<void> => {
      const id = peer.toString()
      if (id === selfId) return
      const known = addresses.length > 0 ? addresses : await addressesOf(peer)
      const provider = toProvider(id, known)
      if (provider !== undefined) into.push(provider)
    }
    for (const peer of datastore.providersOf(info.mhKey)) {
      if (peer !== selfId) await emit(peerIdFromString(peer), [])
    }

    const candidates: Candidate[] = closest(members.values(), info.target, K).map((m) => ({
      id: m.id,
      key: m.id.toString(),
      kad: m.kad,
      state: 'new'
    }))
    const known = new Set(candidates.map((c) => c.key))
    // Set once the lookup has settled: answers still in flight then are dropped when they arrive (requests carry
    // no abort signal; each session times its requests out itself).
    let finished = false
    let inFlight = 0

    await new Promise<void>((resolve) => {
      const schedule = (): void => {
        if (finished || closed) {
          finished = true
          resolve()
          return
        }
        // The window: the closest candidates that have not failed, `alpha` of them plus one more for each
        // that is slow to answer (hedging). The lookup has settled when every candidate in the window has
        // answered or is slow, and at least `alpha` (or all there are) have answered.
        let size = alpha
        let length = 0
        let answered = 0
        let settled = true
        for (const candidate of candidates) {
          if (length === size) break
          if (candidate.state === 'failed') continue
          length++
          if (candidate.state === 'slow') size++
          else if (candidate.state === 'done') answered++
          else settled = false
          if (candidate.state === 'new') ask(candidate)
        }
        if ((settled && answered >= Math.min(alpha, length)) || inFlight === 0) {
          finished = true
          resolve()
        }
      }

      const ask = (candidate: Candidate): void => {
        candidate.state = 'asking'
        inFlight++
        const hedge = setTimeout(() => {
          if (candidate.state === 'asking') {
            candidate.state = 'slow'
            schedule()
          }
        }, LOOKUP_HEDGE_MS)
        const viaLookup = members.get(candidate.key)?.lookups === true
        ;(viaLookup ? lookupSessions : sessions)
          .request(
            candidate.id,
            { type: MessageType.GET_PROVIDERS, key: info.mh, closer: [], providers: [] },
            requestTimeoutMs
          )
          .then(async (answer) => {
            if (finished) return
            // Not 'done' until its providers are emitted: emitting can wait on the peer store, and a lookup
            // that settles meanwhile would drop them.
            candidate.state = 'reading'
            for (const provider of await learnPeers(answer.providers))
              await emit(provider.id, provider.addresses)
            for (const peer of await learnPeers(answer.closer)) {
              const id = peer.id.toString()
              if (known.has(id) || peer.addresses.length === 0) continue
              known.add(id)
              const entry: Candidate = { id: peer.id, key: id, kad: peerKadId(peer.id), state: 'new' }
              let i = candidates.length
              while (
                i > 0 &&
                compareDistance(entry.kad, (candidates[i - 1] as Candidate).kad, info.target) < 0
              )
                i--
              candidates.splice(i, 0, entry)
              connect(peer.id)
            }
            candidate.state = 'done'
          })
          .catch((err: unknown) => {
            candidate.state = 'failed'
            if (!finished) log.debug({ err, peer: candidate.key, key }, 'lookup request failed')
          })
          .finally(() => {
            clearTimeout(hedge)
            inFlight--
            if (!finished) schedule()
          })
      }

      schedule()
    })
  }

  const lookup = (key: string, options: LookupOptions = {}): AsyncIterable<Provider> => {
    check()
    const count = options.count ?? DEFAULT_LOOKUP_COUNT
    const now = Date.now()
    let entry = lookups.get(key)
    if (entry === undefined || entry.expires <= now) {
      const shared = new SharedLookup()
      const fresh = { lookup: shared, expires: Number.POSITIVE_INFINITY }
      entry = fresh
      lookups.set(key, fresh)
      runLookup(key, shared)
        .catch((err: unknown) => log.warn({ err, key }, 'lookup failed'))
        .finally(() => {
          shared.finish()
          fresh.expires = Date.now() + (shared.providers.length > 0 ? lookupCacheTtlMs : missCacheTtlMs)
        })
    }
    return entry.lookup.read(count, options.signal)
  }

  // --- bootstrap --------------------------------------------------------------------------------

  const selfPeer = (): BootstrapPeer => ({ id: selfId, addresses: selfAddresses().map((a) => a.toString()) })

  const bootstrapOnce = async (): Promise<boolean> => {
    const bootstrapper = init.bootstrapper
    if (bootstrapper === undefined) return members.size > 0
    const signal = AbortSignal.any([shutdown.signal, AbortSignal.timeout(30_000)])
    if (bootstrapper.register !== undefined) {
      await bootstrapper
        .register(selfPeer(), { signal })
        .catch((err: unknown) => log.warn({ err }, 'could not register with the bootstrapper'))
    }
    const peers = await bootstrapper.peers({ signal })
    const own = new Set(selfAddresses().map((a) => a.toString()))
    let reached = 0
    await Promise.all(
      peers.map(async (peer) => {
        if (peer.id === selfId || peer.addresses.every((a) => own.has(a))) return
        try {
          const dialSignal = AbortSignal.any([signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
          const addresses = peer.addresses.map((a) => multiaddr(a))
          if (peer.id !== undefined) {
            const id = peerIdFromString(peer.id)
            await libp2p.peerStore.merge(id, { multiaddrs: addresses })
            await libp2p.dial(id, { signal: dialSignal })
          } else {
            await libp2p.dial(addresses, { signal: dialSignal })
          }
          reached++
        } catch (err) {
          if ((err as Error).name === 'DialError' && /dial self/i.test((err as Error).message)) return
          dialFailed(err, peer.id ?? peer.addresses.join(' '), 'could not dial a bootstrap peer')
        }
      })
    )
    if (reached === 0 && peers.length > 0)
      log.warn({ peers: peers.length }, 'no bootstrap peer could be reached')
    return reached > 0
  }

  const bootstrapLoop = async (): Promise<void> => {
    let backoff = BOOTSTRAP_MIN_BACKOFF_MS
    while (!closed) {
      let ok = false
      try {
        ok = await bootstrapOnce()
      } catch (err) {
        if (!closed) log.warn({ err }, 'bootstrap failed; retrying')
      }
      if (ok || members.size > 0) {
        backoff = BOOTSTRAP_MIN_BACKOFF_MS
        await sleep(BOOTSTRAP_INTERVAL_MS, shutdown.signal)
      } else {
        await sleep(backoff, shutdown.signal)
        backoff = Math.min(backoff * 2, BOOTSTRAP_MAX_BACKOFF_MS)
      }
    }
  }

  const exchangeWithRandomMember = (): void => {
    const all = [...members.values()]
    const pick = all[Math.floor(Math.random() * all.length)]
    if (pick !== undefined)
      exchangePeers(pick.id).catch((err: unknown) => log.debug({ err }, 'peer exchange failed'))
  }

  let rounds = 0
  const reconciler = setInterval(() => {
    reconcile().catch((err: unknown) => log.debug({ err }, 'reconcile failed'))
    if (rounds++ % 5 === 4 && (redialWanted || redials.pending))
      redialKnownPeers().catch((err: unknown) => log.debug({ err }, 'redial failed'))
    // While the view is still growing (a node starting, or joining a cluster), ask for peers every tick.
    if (Date.now() - lastGrowth < VIEW_GROWTH_WINDOW_MS) exchangeWithRandomMember()
  }, RECONCILE_INTERVAL_MS)
  reconciler.unref()

  const maintenance = setInterval(() => {
    datastore.sweep()
    const now = Date.now()
    for (const [key, entry] of lookups) if (entry.expires <= now) lookups.delete(key)
    exchangeWithRandomMember()
  }, PEER_EXCHANGE_INTERVAL_MS)
  maintenance.unref()

  if (init.bootstrapper !== undefined)
    bootstrapLoop().catch((err: unknown) => log.error({ err }, 'bootstrap loop ended'))

  const router: Libp2pRouter = {
    peerId: selfId,
    libp2p,
    addresses: () => selfAddresses().map((a) => a.toString()),
    self: selfPeer,
    peers: () => [...members.keys()],
    providerRecords: () => datastore.recordCount(),
    async bootstrap() {
      check()
      return bootstrapOnce()
    },
    async advertise(keys) {
      check()
      for (const key of keys) advertised.add(key)
      await announce(keys)
    },
    async withdraw(keys) {
      check()
      const infos = keys.map((key) => {
        const info = keyInfo(key)
        advertised.delete(key)
        keyInfos.delete(key)
        lookups.delete(key)
        return info
      })
      await forEachConcurrently(groupByHolder(infos), ADVERTISE_PEER_CONCURRENCY, async ({ holder, mhs }) => {
        await sendRecords(WITHDRAW_PROTOCOL, holder.id, mhs).catch((err: unknown) =>
          log.debug({ err, peer: holder.id.toString() }, 'peer did not take withdrawals')
        )
      })
    },
    lookup,
    async ready() {
      check()
      return members.size > 0
    },
    async close() {
      if (closed) return
      closed = true
      shutdown.abort()
      clearInterval(maintenance)
      clearInterval(reconciler)
      clearTimeout(joinTimer)
      stopConnectionChecks()
      sessions.closeAll()
      lookupSessions.closeAll()
      exchangeSessions.closeAll()
      libp2p.removeEventListener('peer:identify', onIdentify)
      libp2p.removeEventListener('peer:connect', onConnect)
      libp2p.removeEventListener('peer:disconnect', onDisconnect)
      libp2p.removeEventListener('connection:open', onConnectionOpen)
      const bootstrapper = init.bootstrapper
      if (bootstrapper?.unregister !== undefined) {
        await bootstrapper.unregister(selfPeer(), { signal: AbortSignal.timeout(2000) }).catch(() => {})
      }
      await bootstrapper?.close?.()
      await libp2p.stop()
    }
  }
  return router
}
