/**
 * @packageDocumentation
 * Digest advertisement and provider lookup. {@link Router} is the interface; {@link createLibp2pRouter} runs
 * it on libp2p's Kademlia DHT, wire-compatible with Spegel (`/spegel/kad/1.0.0`, sha2-256 raw CIDv1 keys);
 * {@link createMemoryNetwork} makes in-memory routers for tests and embedding. Bootstrappers find the first
 * peers (static list, DNS, HTTP(S) with mTLS), and {@link createAdvertiser} keeps a ContentStore advertised.
 *
 * @example
 * ```ts
 * import { createLibp2pRouter, staticBootstrapper } from '@kadmirror/routing'
 *
 * const router = await createLibp2pRouter({
 *   listen: ['/ip4/0.0.0.0/tcp/5001'],
 *   dataDir: '/var/lib/kadmirror',
 *   bootstrapper: staticBootstrapper(['/ip4/10.0.0.2/tcp/5001'])
 * })
 * await router.advertise(['sha256:…', 'docker.io/library/nginx:1.27'])
 * for await (const peer of router.lookup('sha256:…')) console.log(peer.registryUrl)
 * await router.close()
 * ```
 */

export {
  type AllowList,
  createAllowList,
  generatePrivateNetworkKey,
  parsePrivateNetworkKey
} from './access.ts'
export { type AdvertisedKinds, type Advertiser, type AdvertiserInit, createAdvertiser } from './advertiser.ts'
export {
  type AddrInfoJson,
  type BootstrapOptions,
  type BootstrapPeer,
  type Bootstrapper,
  completeAddress,
  type DnsBootstrapperInit,
  dnsBootstrapper,
  parseAddrInfo,
  parseAddrInfos,
  staticBootstrapper,
  toAddrInfo
} from './bootstrap.ts'
export {
  type BootstrapServer,
  type BootstrapServerInit,
  createBootstrapServer,
  idHandler
} from './bootstrap-server.ts'
export { CA_FILE, CERT_FILE, KEY_FILE, readCertDir, type TlsMaterial } from './cert-dir.ts'
export * as constants from './constants.ts'
export {
  CLAIM_PROTOCOL,
  LOOKUP_HEDGE_MS,
  LOOKUP_PROTOCOL,
  PROVIDE_PROTOCOL,
  REGISTRY_INFO_PROTOCOL,
  WITHDRAW_PROTOCOL
} from './constants.ts'
export {
  InvalidAccessRuleError,
  InvalidBootstrapPeerError,
  InvalidCertDirError,
  InvalidFrameError,
  InvalidPeerKeyError,
  NoArbiterError,
  RequestTimeoutError,
  ROUTING_ERROR_CODES,
  RouterClosedError,
  RoutingError,
  type RoutingErrorCode,
  SessionClosedError
} from './errors.ts'
export type {
  BootstrapEvent,
  FailureEvent,
  LookupEvent,
  LookupSource,
  PeerJoinEvent,
  PeerLeaveEvent,
  ProvideEvent,
  RouterEventMap,
  RouterEvents,
  WithdrawEvent
} from './events.ts'
export { type HttpBootstrapperInit, httpBootstrapper } from './http-bootstrapper.ts'
export { compareDistance, kadId, keyToCid } from './keys.ts'
export { createLibp2pRouter, type Libp2pRouter, type Libp2pRouterInit } from './libp2p-router.ts'
export {
  createMemoryNetwork,
  type MemoryNetwork,
  type MemoryNetworkInit,
  type MemoryRouter,
  type MemoryRouterInit
} from './memory-router.ts'
export { loadOrCreatePeerKey, PEER_KEY_FILE } from './peer-key.ts'
export type { ClaimAnswer, ClaimOptions, LookupOptions, Provider, Router } from './router.ts'
export {
  closest,
  groupByHolder,
  insertByDistance,
  type LookupOutcome,
  type LookupPeer,
  type LookupStrategyInit,
  type PlacedKey,
  type PlacedPeer,
  runLookupStrategy,
  type Timers
} from './strategy.ts'
