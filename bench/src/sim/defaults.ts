/**
 * The simulated design's tunables (the router's defaults: constants.ts in @kadmirror/routing) and the network
 * model: 0.1 ms links with jitter, a dial of 3 round trips and 4 ms of handshake CPU (two routers here: 5.4 ms,
 * 6 ms CPU for both ends), 1 s timeouts, 1 Gbit/s links.
 */
import type { NetworkModel } from './network.ts'
import type { SimSettings } from './sim-node.ts'

/** The design's tunables, as the router's defaults. */
export const DEFAULT_SETTINGS: SimSettings = {
  replication: 5,
  alpha: 3,
  frontier: 20,
  hedgeMs: 15,
  near: 16,
  random: 8,
  maxConnections: 64,
  gossipIntervalMs: 200,
  gossipFanout: 3,
  rumorsPerMessage: 16,
  retransmitMultiplier: 4,
  suspectTimeoutMs: 5000,
  tombstoneMs: 10 * 60_000,
  recordBytes: 100,
  reconnectIntervalMs: 10_000,
  dialBackoffMs: 5000,
  trimGraceMs: 1000,
  datagrams: true,
  datagramRequestBytes: 1024,
  datagramRetryMs: 50
}

/** The network model. */
export const DEFAULT_MODEL: NetworkModel = {
  latencyMs: 0.1,
  jitterMs: 0.05,
  dialRoundTrips: 3,
  dialCpuMs: 4,
  timeoutMs: 1000,
  loss: 0,
  bytesPerMs: 125_000
}
