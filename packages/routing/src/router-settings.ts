/**
 * The options of {@link createLibp2pRouter}, documented with their defaults, and the settings the router's parts
 * are built with (every default filled in).
 */
import type { PrivateKey } from '@libp2p/interface'
import type { Libp2pInit } from 'libp2p'
import { type Logger, pino } from 'pino'
import type { Bootstrapper } from './bootstrap.ts'
import {
  CLAIM_HOLD_MS,
  DEFAULT_DHT_PROTOCOL,
  DEFAULT_LOOKUP_ALPHA,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_PEER_CONNECTIONS,
  DEFAULT_REGISTRY_PORT,
  DEFAULT_REPLICATION,
  DEFAULT_ROUTER_PORT,
  LOOKUP_CACHE_TTL_MS,
  LOOPBACK_INBOUND_CONNECTION_THRESHOLD,
  MISS_CACHE_TTL_MS,
  PROVIDER_VALIDITY_MS,
  REQUEST_TIMEOUT_MS
} from './constants.ts'

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
  /** How long this node, as a key's arbiter, holds a claim on it, in ms (see `Router.claim`). @default {@link CLAIM_HOLD_MS} (10 s) */
  claimHoldMs?: number
  /** How long lookups with providers are cached, in ms. @default {@link LOOKUP_CACHE_TTL_MS} (5 s) */
  lookupCacheTtlMs?: number
  /** How long lookups without providers are cached, in ms. @default {@link MISS_CACHE_TTL_MS} (500 ms) */
  missCacheTtlMs?: number
  /** Most open connections (a connection to every node of the cluster). @default {@link DEFAULT_MAX_CONNECTIONS} (1000) */
  maxConnections?: number
  /**
   * How the node knows the cluster. `mesh`: it connects to every DHT node it learns of, and its view is the nodes
   * it is connected to (any cluster Spegel runs in; every node holds N − 1 connections). `gossip`: kadmirror nodes
   * know every member by gossip (~100 bytes a member) and connect to at most `peerConnections` of them, dialling
   * others on demand; lookups stay one round (see the README's "Large clusters"). Spegel peers and kadmirror
   * nodes in mesh mode are members while connected, in either mode. @default 'mesh'
   */
  membership?: 'mesh' | 'gossip'
  /** Most connections to kadmirror members in gossip mode. @default {@link DEFAULT_PEER_CONNECTIONS} (64) */
  peerConnections?: number
  /**
   * Gossip mode: ask members this node has no connection to in one UDP datagram each way, on the router port's
   * number (a dial costs a handshake at both ends). The port must then be open for UDP as for TCP; a member that
   * leaves two datagrams unanswered is dialled instead for a minute. Without a datagram socket (off, or the bind
   * failed) members are dialled. @default true
   */
  datagramLookups?: boolean
  /**
   * Inbound connections per second accepted from one host. Production nodes dial from distinct IPs and keep
   * libp2p's default; with `allowLoopback` (every node on 127.0.0.1) the default is lifted to
   * {@link LOOPBACK_INBOUND_CONNECTION_THRESHOLD}.
   */
  inboundConnectionThreshold?: number
  /**
   * libp2p's metrics implementation (for example `prometheusMetrics({ registry })` from `@libp2p/prometheus-metrics`),
   * handed to libp2p as its `metrics` option. Default none.
   */
  metrics?: Libp2pInit['metrics']
  /**
   * A private network: the content of a swarm key file (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits; make
   * one with `generatePrivateNetworkKey()` or `kadmirror generate-psk`). Only nodes holding the same key can connect
   * to this node's router at all — Spegel nodes, which have no such option, cannot. Default none (an open DHT).
   * @throws {InvalidAccessRuleError} (from createLibp2pRouter) when it is not a swarm key.
   */
  privateNetworkKey?: string
  /**
   * CIDR networks (`10.0.0.0/8`, `fd00::/8`) that may connect to the router port; connections from elsewhere are
   * refused before any handshake, and addresses elsewhere are not dialled. Default: any address.
   * @throws {InvalidAccessRuleError} (from createLibp2pRouter) for an entry that is not an IP network.
   */
  allowedNetworks?: readonly string[]
  /** Structured logger; default silent. */
  logger?: Logger
}

const silent = pino({ level: 'silent' })

/** The options of {@link createLibp2pRouter} with their defaults filled in. */
export type Settings = Required<
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
    | 'claimHoldMs'
    | 'lookupCacheTtlMs'
    | 'missCacheTtlMs'
    | 'membership'
    | 'peerConnections'
  >
> & { log: Logger }

export function settingsOf(init: Libp2pRouterInit): Settings {
  return {
    protocol: init.protocol ?? DEFAULT_DHT_PROTOCOL,
    allowLoopback: init.allowLoopback ?? false,
    registryPort: init.registryPort ?? DEFAULT_REGISTRY_PORT,
    registryScheme: init.registryScheme ?? 'http',
    replication: init.replication ?? DEFAULT_REPLICATION,
    alpha: init.alpha ?? DEFAULT_LOOKUP_ALPHA,
    requestTimeoutMs: init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    providerValidityMs: init.providerValidityMs ?? PROVIDER_VALIDITY_MS,
    claimHoldMs: init.claimHoldMs ?? CLAIM_HOLD_MS,
    lookupCacheTtlMs: init.lookupCacheTtlMs ?? LOOKUP_CACHE_TTL_MS,
    missCacheTtlMs: init.missCacheTtlMs ?? MISS_CACHE_TTL_MS,
    membership: init.membership ?? 'mesh',
    peerConnections: init.peerConnections ?? DEFAULT_PEER_CONNECTIONS,
    log: init.logger ?? silent
  }
}
