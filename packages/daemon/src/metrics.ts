/**
 * The node's Prometheus metrics (prom-client, one registry), fed by events: the mirror's `response`,
 * `peer-failure` and `digest-mismatch`, the router's `lookup` and `failure`, and gauges read from the advertiser
 * and the router at scrape time. Spegel's names and labels first (its dashboard works unchanged), ours under
 * `kadmirror_*`; process and Node runtime metrics beside them.
 */
import type { ServerResponse } from 'node:http'
import type { MirrorHandler, PeerFailureKind, ResponseEvent } from '@kadmirror/mirror'
import type { AdvertisedKinds, Advertiser, Libp2pRouter } from '@kadmirror/routing'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { RESPONSE_SIZE_BUCKETS_BYTES } from './constants.ts'

/** The kinds of `kadmirror_peer_failures_total` (the mirror's `PeerFailureKind`). */
const PEER_FAILURE_KINDS: readonly PeerFailureKind[] = [
  'not-held',
  'busy',
  'digest-mismatch',
  'slow',
  'bad-answer',
  'timeout',
  'connection',
  'other'
]

/** What the metrics are read from. */
export interface NodeMetricsSources {
  mirror: MirrorHandler
  router: Libp2pRouter
  advertiser: Advertiser
}

/** A node's metrics. */
export interface NodeMetrics {
  readonly registry: Registry
  /** Counts a request to the registry port while it runs (`http_requests_inflight`). */
  trackInflight(path: string, res: ServerResponse): void
}

/** Spegel's `handler` label of a request path. */
export function handlerLabel(path: string): string {
  if (path === '/readyz' || path === '/livez') return path
  if (path === '/v2' || path.startsWith('/v2/')) return '/v2/*'
  return 'other'
}

/** Whether a response counts as a mirrored request (Spegel counts only what it had to ask peers for). */
function mirrored(event: ResponseEvent): 'hit' | 'miss' | undefined {
  if (event.source === 'peer') return 'hit'
  if (event.source === 'miss' || event.source === 'failed') return 'miss'
  return undefined
}

/** Sets a gauge per registry from the advertiser's counts, at scrape time. */
function advertisedGauge(
  registry: Registry,
  name: string,
  help: string,
  advertiser: Advertiser,
  pick: (k: AdvertisedKinds) => number
) {
  return new Gauge({
    name,
    help,
    labelNames: ['registry'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [name, kinds] of advertiser.kinds()) this.set({ registry: name }, pick(kinds))
    }
  })
}

function spegelMetrics(registry: Registry, sources: NodeMetricsSources) {
  const registers = [registry]
  const requests = new Counter({
    name: 'spegel_mirror_requests_total',
    help: 'Total number of mirror requests.',
    labelNames: ['registry', 'cache'],
    registers
  })
  const lastSuccess = new Gauge({
    name: 'spegel_mirror_last_success_timestamp_seconds',
    help: 'The timestamp of the last successful mirror request.',
    registers
  })
  const resolve = new Histogram({
    name: 'spegel_resolve_duration_seconds',
    help: 'The duration for router to resolve a peer.',
    labelNames: ['router'],
    registers
  })
  advertisedGauge(
    registry,
    'spegel_advertised_image_tags',
    'Number of image tags advertised to be available.',
    sources.advertiser,
    (k) => k.tags
  )
  advertisedGauge(
    registry,
    'spegel_advertised_image_digests',
    'Number of image digests advertised to be available.',
    sources.advertiser,
    (k) => k.imageDigests
  )
  advertisedGauge(
    registry,
    'spegel_advertised_content_digests',
    'Number of content digests advertised to be available.',
    sources.advertiser,
    (k) => k.contentDigests
  )
  sources.mirror.events.on('response', (event) => {
    const cache = mirrored(event)
    if (cache === undefined) return
    requests.inc({ registry: event.registry ?? '', cache })
    if (cache === 'hit') lastSuccess.setToCurrentTime()
  })
  sources.router.events.on('lookup', (event) => {
    if (event.source === 'network')
      resolve.observe({ router: 'libp2p' }, (event.firstProviderMs ?? event.durationMs) / 1000)
  })
}

function httpMetrics(registry: Registry, mirror: MirrorHandler) {
  const registers = [registry]
  const labelNames = ['handler', 'method', 'code']
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'The latency of the HTTP requests.',
    labelNames,
    registers
  })
  const size = new Histogram({
    name: 'http_response_size_bytes',
    help: 'The size of the HTTP responses.',
    labelNames,
    buckets: RESPONSE_SIZE_BUCKETS_BYTES,
    registers
  })
  const inflight = new Gauge({
    name: 'http_requests_inflight',
    help: 'The number of inflight requests being handled at the same time.',
    labelNames: ['handler'],
    registers
  })
  mirror.events.on('response', (event) => {
    const labels = { handler: handlerLabel(event.path), method: event.method, code: String(event.status) }
    duration.observe(labels, event.durationMs / 1000)
    size.observe(labels, event.bytes)
  })
  return (path: string, res: ServerResponse): void => {
    const handler = handlerLabel(path)
    inflight.inc({ handler })
    res.once('close', () => inflight.dec({ handler }))
  }
}

function kadmirrorMetrics(registry: Registry, sources: NodeMetricsSources) {
  const registers = [registry]
  const bytes = new Counter({
    name: 'kadmirror_mirror_bytes_total',
    help: 'Body bytes the mirror served, by where they came from.',
    labelNames: ['source'],
    registers
  })
  const responses = new Counter({
    name: 'kadmirror_mirror_responses_total',
    help: 'Mirror responses by endpoint and outcome (local, peer, miss, filtered, invalid, failed, meta).',
    labelNames: ['kind', 'source'],
    registers
  })
  const failures = new Counter({
    name: 'kadmirror_peer_failures_total',
    help: 'Peer requests that failed, by kind.',
    labelNames: ['kind'],
    registers
  })
  const mismatches = new Counter({
    name: 'kadmirror_digest_mismatches_total',
    help: 'Transfers from peers whose bytes did not match their digest.',
    registers
  })
  const lookups = new Histogram({
    name: 'kadmirror_lookup_duration_seconds',
    help: 'Router lookups until all providers were known, by source (network, shared, cache).',
    labelNames: ['source'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers
  })
  const routerFailures = new Counter({
    name: 'kadmirror_router_failures_total',
    help: 'Router operations that failed and were absorbed, by operation.',
    labelNames: ['operation'],
    registers
  })
  new Gauge({
    name: 'kadmirror_router_peers',
    help: 'DHT nodes in the router view (connected and identified).',
    registers,
    collect() {
      this.set(sources.router.peers().length)
    }
  })
  new Gauge({
    name: 'kadmirror_peer_uploads',
    help: 'Blobs this node is serving to peers right now (capped by --max-peer-uploads).',
    registers,
    collect() {
      this.set(sources.mirror.peerUploads())
    }
  })
  new Gauge({
    name: 'kadmirror_peer_uploads_peak',
    help: 'The most blobs this node has served to peers at once since it started (a scrape misses short peaks).',
    registers,
    collect() {
      this.set(sources.mirror.peakPeerUploads())
    }
  })
  new Gauge({
    name: 'kadmirror_advertised_keys',
    help: 'Keys this node advertises.',
    registers,
    collect() {
      this.set(sources.advertiser.size())
    }
  })
  // Every label value known in advance starts at 0, so rates and dashboards have a series before the first event.
  for (const source of ['local', 'peer']) bytes.inc({ source }, 0)
  for (const kind of PEER_FAILURE_KINDS) failures.inc({ kind }, 0)
  mismatches.inc(0)
  const { mirror, router } = sources
  mirror.events.on('response', (event) => {
    responses.inc({ kind: event.kind, source: event.source })
    if (event.bytes > 0 && (event.source === 'local' || event.source === 'peer'))
      bytes.inc({ source: event.source }, event.bytes)
  })
  mirror.events.on('peer-failure', (event) => failures.inc({ kind: event.kind }))
  mirror.events.on('digest-mismatch', () => mismatches.inc())
  router.events.on('lookup', (event) => lookups.observe({ source: event.source }, event.durationMs / 1000))
  router.events.on('failure', (event) => routerFailures.inc({ operation: event.operation }))
}

/** Subscribes the node's metrics in `registry` (default a new one) to the sources' events. */
export function createNodeMetrics(sources: NodeMetricsSources, registry = new Registry()): NodeMetrics {
  collectDefaultMetrics({ register: registry })
  spegelMetrics(registry, sources)
  const trackInflight = httpMetrics(registry, sources.mirror)
  kadmirrorMetrics(registry, sources)
  return { registry, trackInflight }
}
