/**
 * The libp2p node a router runs on: TCP, noise, yamux without keep-alive, identify, ping and the stock kad-dht
 * service as a DHT server on Spegel's protocol, with the patches of `patches.ts` applied. Also the address
 * helpers every part shares (loopback filtering, `/p2p/` stripping).
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { type Identify, identify } from '@libp2p/identify'
import type { ComponentLogger, Logger as Libp2pLogger, PrivateKey } from '@libp2p/interface'
import { type KadDHT, kadDHT, type PeerInfoMapper } from '@libp2p/kad-dht'
import { defaultLogger } from '@libp2p/logger'
import { type Ping, ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p, type Libp2pInit } from 'libp2p'
import type { Logger } from 'pino'
import type { AllowList } from './access.ts'
import {
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_ROUTER_PORT,
  IDENTIFY_TIMEOUT_MS,
  LOOPBACK_INBOUND_CONNECTION_THRESHOLD,
  LOOPBACK_MAX_INCOMING_PENDING_CONNECTIONS,
  STOCK_PROVIDER_SWEEP_INTERVAL_MS,
  STOCK_QUERY_SELF_INTERVAL_MS
} from './constants.ts'
import { tuneStockDht, useHalfWindowUpdates } from './patches.ts'
import type { ProviderDatastore } from './provider-datastore.ts'

/** The services of a router's libp2p node. */
export type RouterServices = {
  dht: KadDHT
  ping: Ping
  identify: Identify
}

/** A router's libp2p node. */
export type RouterLibp2p = Libp2p<RouterServices>

/** What {@link createRouterLibp2p} needs; every field is resolved by the caller (no defaults here but the listen addresses). */
export interface RouterLibp2pInit {
  listen?: string[]
  announce?: string[]
  allowLoopback: boolean
  privateKey?: PrivateKey
  protocol: string
  /** Gossip mode: the stock self-query never runs at start either (it would dial the closest of every node). */
  membership?: 'mesh' | 'gossip'
  datastore: ProviderDatastore
  providerValidityMs: number
  maxConnections?: number
  inboundConnectionThreshold?: number
  metrics?: Libp2pInit['metrics']
  /** The private-network key (swarm key file bytes): only nodes holding it can connect. */
  privateNetworkKey?: Uint8Array
  /** Only addresses in these networks may connect, or be dialled. */
  allowedNetworks?: AllowList
  log: Logger
}

/** The IP address of a multiaddr's first component, or undefined when it is not `/ip4` or `/ip6`. */
function ipOf(address: Multiaddr): string | undefined {
  const first = address.getComponents()[0]
  return first?.name === 'ip4' || first?.name === 'ip6' ? first.value : undefined
}

/**
 * The connection gater of an allow list: inbound connections from outside it are refused before any handshake, and
 * addresses outside it are never dialled (a DNS address is judged once resolved).
 */
function allowListGater(allowed: AllowList, log: Logger): NonNullable<Libp2pInit['connectionGater']> {
  return {
    denyDialMultiaddr: (address) => {
      const ip = ipOf(address)
      return ip !== undefined && !allowed.allows(ip)
    },
    denyInboundConnection: (connection) => {
      const ip = ipOf(connection.remoteAddr)
      const denied = ip === undefined || !allowed.allows(ip)
      if (denied)
        log.debug(
          { remote: connection.remoteAddr.toString() },
          'refused a connection from outside the allowed networks'
        )
      return denied
    }
  }
}

/** Whether an address is on the loopback interface (127.0.0.0/8, ::1). */
export function isLoopback(address: Multiaddr): boolean {
  const first = address.getComponents()[0]
  if (first === undefined) return false
  return (
    (first.name === 'ip4' && (first.value ?? '').startsWith('127.')) ||
    (first.name === 'ip6' && first.value === '::1')
  )
}

/** The address without its `/p2p/<id>` part. */
export function withoutPeerId(address: Multiaddr): Multiaddr {
  const components = address.getComponents().filter((c) => c.name !== 'p2p')
  return multiaddr(components.map((c) => `/${c.name}${c.value === undefined ? '' : `/${c.value}`}`).join(''))
}

/** Where a router listens when not told: every IPv4 and IPv6 address, on Spegel's router port. */
export const DEFAULT_LISTEN_ADDRESSES: readonly string[] = [
  `/ip4/0.0.0.0/tcp/${DEFAULT_ROUTER_PORT}`,
  `/ip6/::/tcp/${DEFAULT_ROUTER_PORT}`
]

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

/** Connection manager limits: lifted for a cluster on 127.0.0.1, where every node dials from the same host. */
function connectionLimits(init: RouterLibp2pInit): Record<string, number> {
  const limits: Record<string, number> = { maxConnections: init.maxConnections ?? DEFAULT_MAX_CONNECTIONS }
  if (init.inboundConnectionThreshold !== undefined)
    return { ...limits, inboundConnectionThreshold: init.inboundConnectionThreshold }
  if (!init.allowLoopback) return limits
  return {
    ...limits,
    inboundConnectionThreshold: LOOPBACK_INBOUND_CONNECTION_THRESHOLD,
    maxIncomingPendingConnections: LOOPBACK_MAX_INCOMING_PENDING_CONNECTIONS
  }
}

/** The stock kad-dht service: a DHT server that answers every peer, Spegel's included. */
function stockDht(init: RouterLibp2pInit) {
  const peerInfoMapper: PeerInfoMapper = (peer) =>
    init.allowLoopback ? peer : { ...peer, multiaddrs: peer.multiaddrs.filter((a) => !isLoopback(a)) }
  return kadDHT({
    protocol: init.protocol,
    clientMode: false,
    peerInfoMapper,
    // The stock routing table (K = 20 per bucket) serves FIND_NODE and GET_PROVIDERS answers, which carry up to a
    // bucket's size of closer peers: keep it at K, or every answer lists the whole cluster. This router's own full
    // view is in view.ts. It never stores its own records in the stock provider store, so the stock self-query and
    // reprovider only clean up: run them rarely.
    querySelfInterval: STOCK_QUERY_SELF_INTERVAL_MS,
    ...(init.membership === 'gossip' ? { initialQuerySelfInterval: STOCK_QUERY_SELF_INTERVAL_MS } : {}),
    reprovide: { validity: init.providerValidityMs, interval: STOCK_PROVIDER_SWEEP_INTERVAL_MS, threshold: 0 }
  })
}

/** Creates (patched, not started) the libp2p node of a router. @throws when an address does not parse. */
export async function createRouterLibp2p(init: RouterLibp2pInit): Promise<RouterLibp2p> {
  useHalfWindowUpdates(init.log)
  const filter = (addresses: Multiaddr[]): Multiaddr[] =>
    init.allowLoopback ? addresses : addresses.filter((address) => !isLoopback(address))
  const libp2p = await createLibp2p({
    start: false,
    logger: libp2pComponentLogger(),
    ...(init.privateKey === undefined ? {} : { privateKey: init.privateKey }),
    ...(init.metrics === undefined ? {} : { metrics: init.metrics }),
    ...(init.privateNetworkKey === undefined
      ? {}
      : { connectionProtector: preSharedKey({ psk: init.privateNetworkKey }) }),
    ...(init.allowedNetworks === undefined
      ? {}
      : { connectionGater: allowListGater(init.allowedNetworks, init.log) }),
    datastore: init.datastore,
    addresses: {
      listen: init.listen ?? [...DEFAULT_LISTEN_ADDRESSES],
      ...(init.announce === undefined ? {} : { announce: init.announce }),
      announceFilter: filter
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // yamux's keep-alive pings every connection every 30 s only to measure its round-trip time (a failed ping
    // closes nothing): with a connection to every node, N frames per 30 s per node. libp2p's connection monitor
    // pings every connection at the same moment. Both are off; the router's own checks (liveness.ts) ping each
    // connection once a minute, spread over the minute, and close the ones that do not answer.
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionMonitor: { enabled: false },
    connectionManager: connectionLimits(init),
    services: {
      identify: identify({ timeout: IDENTIFY_TIMEOUT_MS }),
      ping: ping(),
      dht: stockDht(init)
    }
  })
  tuneStockDht(libp2p.services.dht, (peer) => libp2p.getConnections(peer).length > 0, init.log)
  return libp2p
}
