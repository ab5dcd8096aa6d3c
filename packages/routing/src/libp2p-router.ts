/**
 * `Libp2pRouter`: a Router on libp2p's Kademlia DHT, wire-compatible with Spegel (`/spegel/kad/1.0.0`, sha2-256
 * raw CIDv1 keys). `@libp2p/kad-dht` runs as a DHT server and answers every peer, Spegel's included. This router
 * keeps a full view of the cluster, stores each provider record at the few peers closest to the key and asks them
 * in parallel: one round. This file only composes the parts, each in a file of its own (`libp2p-node.ts`,
 * `view.ts`, `membership.ts`, `connections.ts`, `records.ts`, `lookup-client.ts`, `lookup-server.ts`, …).
 */

import { EventEmitter } from 'node:events'
import type { Stream } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { AddressBook } from './address-book.ts'
import { Arbiter } from './arbiter.ts'
import type { BootstrapPeer, Bootstrapper } from './bootstrap.ts'
import { BootstrapLoop } from './bootstrap-loop.ts'
import { Connections } from './connections.ts'
import {
  BOOTSTRAP_UNREGISTER_TIMEOUT_MS,
  CONNECTION_PING_INTERVAL_MS,
  CONNECTION_PING_TIMEOUT_MS,
  WITHDRAW_ON_CLOSE_TIMEOUT_MS
} from './constants.ts'
import type { DatagramLookups } from './datagrams.ts'
import type { RouterEventMap, RouterEvents } from './events.ts'
import {
  type GossipMode,
  gossipHooks,
  gossipMode,
  lookupConnections,
  startDatagramLookups
} from './gossip-mode.ts'
import { type RouterLibp2p, withoutPeerId } from './libp2p-node.ts'
import { startConnectionChecks } from './liveness.ts'
import { LookupClient } from './lookup-client.ts'
import { handleLookups } from './lookup-server.ts'
import { Membership } from './membership.ts'
import { cancelPendingAddressUpdate } from './patches.ts'
import { PeerRequests } from './peer-requests.ts'
import { ProviderDatastore } from './provider-datastore.ts'
import { handleRecordStreams, Records } from './records.ts'
import { type Router, RouterClosedError } from './router.ts'
import { createRouterNode } from './router-node.ts'
import { type Libp2pRouterInit, type Settings, settingsOf } from './router-settings.ts'
import { startTimers } from './router-timers.ts'
import { ClusterView, registryProtocol } from './view.ts'

export type { Libp2pRouterInit } from './router-settings.ts'

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

/** The parts of a router, built over one libp2p node. */
interface Parts {
  view: ClusterView
  connections: Connections
  requests: PeerRequests
  records: Records
  lookups: LookupClient
  membership: Membership
  bootstrap: BootstrapLoop
  arbiter: Arbiter
  /** Gossip mode only. */
  gossip?: GossipMode
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
  /** Gossip mode's lookups over UDP. */
  datagrams?: DatagramLookups | undefined
}

/** Builds the parts; each takes what it uses from the shared components (js-libp2p's `components` style). */
function buildParts(shared: Shared, bootstrapper: Bootstrapper | undefined): Parts {
  const { libp2p, settings, datastore, events, shutdown } = shared
  const { log } = settings
  const base = { ...settings, libp2p, datastore, events, shutdown, log }
  const registry = { port: settings.registryPort, scheme: settings.registryScheme }
  const view = new ClusterView({ ...base, registry })
  const connections = new Connections({ ...base, view })
  const requests = new PeerRequests(libp2p, settings.protocol, view)
  const addressBook = new AddressBook({ ...base, view })
  const selfPeer = () => ({
    id: libp2p.peerId.toMultihash().bytes,
    multiaddrs: shared.selfAddresses().map((a) => a.bytes)
  })
  const records = new Records({ ...base, view, selfPeer })
  const lookups = new LookupClient({
    ...base,
    ...{ selfId: libp2p.peerId.toString(), view, addressBook, requests },
    connect: (peer) => connections.connect(peer),
    ...(settings.membership === 'gossip'
      ? lookupConnections(libp2p, view, settings.requestTimeoutMs, shared.datagrams)
      : {}),
    closed: () => shutdown.aborted
  })
  const onJoined = (peers: ReadonlySet<string>): void => {
    records
      .handoff(peers)
      .catch((err: unknown) => log.warn({ err }, 'could not hand records to joining peers'))
  }
  const gossip =
    settings.membership === 'gossip'
      ? gossipMode({ ...shared, view, onJoined, selfAddresses: () => shared.selfAddresses().map(String) })
      : undefined
  const membership = new Membership({
    ...{ ...base, view, connections, requests, addressBook, onJoined },
    ...(gossip === undefined ? {} : { gossip: gossipHooks(gossip) })
  })
  const bootstrap = new BootstrapLoop({
    ...base,
    ...(bootstrapper === undefined ? {} : { bootstrapper }),
    ...{ view, connections, self: shared.selfPeer }
  })
  const arbiter = new Arbiter({
    ...{ libp2p, view, addressBook, log },
    ...{ holdMs: settings.claimHoldMs, requestTimeoutMs: settings.requestTimeoutMs }
  })
  const parts = { view, connections, requests, records, lookups, membership, bootstrap, arbiter }
  return gossip === undefined ? parts : { ...parts, gossip }
}

/** Registers the protocols this node answers beyond the stock DHT: registry announcement, records, lookups, claims. */
async function handleProtocols(shared: Shared, parts: Parts): Promise<void> {
  const [{ libp2p, settings, datastore, datagrams }, { view, gossip }] = [shared, parts]
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
  const gone = gossip === undefined ? {} : { gone: (peer: string) => gossip.members.gone(peer) }
  await handleLookups({ libp2p, datastore, view, ...gone, datagrams, log: settings.log })
  await parts.arbiter.start()
}

/** The router's methods over its parts; `close` stops what `createLibp2pRouter` started. */
function routerOf(shared: Shared, parts: Parts, close: () => Promise<void>): Libp2pRouter {
  const { libp2p, datastore, events, shutdown } = shared
  const check = (): void => {
    if (shutdown.aborted) throw new RouterClosedError()
  }
  return {
    peerId: libp2p.peerId.toString(),
    libp2p,
    events,
    addresses: () => shared.selfAddresses().map((a) => a.toString()),
    self: shared.selfPeer,
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
    async claim(key, options) {
      check()
      return parts.arbiter.claim(key, options)
    },
    async ready() {
      check()
      return parts.view.size > 0
    },
    close
  }
}

/** What the parts share, over a started libp2p node. */
function sharedOf(
  libp2p: RouterLibp2p,
  settings: Settings,
  datastore: ProviderDatastore,
  shutdown: AbortSignal,
  datagrams: DatagramLookups | undefined
): Shared {
  const selfId = libp2p.peerId.toString()
  const selfAddresses = (): Multiaddr[] => libp2p.getMultiaddrs().map(withoutPeerId)
  const selfPeer = (): BootstrapPeer => ({ id: selfId, addresses: selfAddresses().map((a) => a.toString()) })
  const events: RouterEvents = new EventEmitter<RouterEventMap>()
  return { libp2p, settings, datastore, events, shutdown, selfAddresses, selfPeer, datagrams }
}

/**
 * Creates and starts a libp2p router: the libp2p node, connection checks, the parts, the protocol handlers, the
 * timers and the bootstrap loop, in that order; `close()` stops them in reverse.
 * @throws when libp2p cannot listen on the addresses, or {@link InvalidPeerKeyError} when the peer key in
 *   `dataDir` is invalid.
 */
export async function createLibp2pRouter(init: Libp2pRouterInit = {}): Promise<Libp2pRouter> {
  const settings = settingsOf(init)
  const { log } = settings
  const datastore = new ProviderDatastore({ validityMs: settings.providerValidityMs })
  const libp2p = await createRouterNode(init, settings, datastore)
  await libp2p.start()
  const stopConnectionChecks = startConnectionChecks({
    ...{ libp2p, log },
    ...{ intervalMs: CONNECTION_PING_INTERVAL_MS, timeoutMs: CONNECTION_PING_TIMEOUT_MS }
  })
  const shutdown = new AbortController()
  const datagrams = await startDatagramLookups(libp2p, init, settings)
  const shared = sharedOf(libp2p, settings, datastore, shutdown.signal, datagrams)
  const parts = buildParts(shared, init.bootstrapper)
  parts.membership.start()
  await handleProtocols(shared, parts)
  await parts.gossip?.members.start()
  parts.gossip?.plan.start()
  const stopTimers = startTimers(parts, datastore, log)
  const bootstrapper = init.bootstrapper
  if (bootstrapper !== undefined)
    parts.bootstrap.loop().catch((err: unknown) => log.error({ err }, 'bootstrap loop ended'))

  // One close for every caller: the first starts it, later (and concurrent) calls wait for the same.
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    if (parts.view.size > 0) await parts.records.withdrawAll(WITHDRAW_ON_CLOSE_TIMEOUT_MS)
    await parts.gossip?.members.leave()
    shutdown.abort()
    datagrams?.close()
    parts.gossip?.plan.stop()
    parts.gossip?.members.stop()
    stopTimers()
    stopConnectionChecks()
    parts.requests.closeAll()
    parts.arbiter.stop()
    parts.membership.stop()
    const signal = AbortSignal.timeout(BOOTSTRAP_UNREGISTER_TIMEOUT_MS)
    await bootstrapper?.unregister?.(shared.selfPeer(), { signal }).catch(() => {})
    await bootstrapper?.close?.()
    await libp2p.stop()
    cancelPendingAddressUpdate(libp2p, log)
  }
  return routerOf(shared, parts, () => {
    closing ??= close()
    return closing
  })
}
