/**
 * `createNode()`: the one composition root of a kadmirror node. Store → mirror listener → router → advertiser →
 * mirror handler → metrics server, started in that order and closed in reverse by one `close()`. The daemon's CLI
 * only turns flags into {@link NodeOptions} and calls it; examples, tests and benchmarks call it too.
 */
import { access, constants as fsConstants, mkdir } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  DEFAULT_CONTAINERD_NAMESPACE,
  DEFAULT_CONTENT_DIR,
  IngestDirectory,
  openContainerdStore
} from '@kadmirror/containerd'
import {
  imageFilterOf,
  listenMirror,
  type MirrorHandler,
  type MirrorHandlerInit,
  type MirrorListener
} from '@kadmirror/mirror'
import type { Digest } from '@kadmirror/oci'
import {
  type Advertiser,
  createAdvertiser,
  createLibp2pRouter,
  type Libp2pRouter,
  type Libp2pRouterInit
} from '@kadmirror/routing'
import { type ContentStore, filterImages, openOciLayoutStore } from '@kadmirror/store'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { type Logger, pino } from 'pino'
import { Registry } from 'prom-client'
import { DEFAULT_METRICS_PORT, DEFAULT_REGISTRY_PORT, DRAIN_POLL_MS, SHUTDOWN_GRACE_MS } from './constants.ts'
import { DebugState } from './debug-state.ts'
import { InFlightTracker } from './in-flight-tracker.ts'
import { measure } from './measure.ts'
import { createNodeMetrics, type NodeMetrics } from './metrics.ts'
import { type DebugWeb, type MetricsServer, startMetricsServer } from './metrics-server.ts'
import { PendingStore } from './pending-store.ts'

/** Where a node's content comes from. */
export type StoreOption =
  /**
   * containerd's content store over its gRPC API (Spegel's only store). Opened in the background: until containerd
   * answers, the node holds nothing (the mirror answers 404) and the connection is retried with backoff.
   */
  | { kind: 'containerd'; address?: string; namespace?: string; contentDir?: string }
  /** An OCI image-layout directory (the embedded store: runs without containerd). */
  | { kind: 'oci-layout'; directory: string; create?: boolean }
  /** A store the caller made; `close()` leaves it open. */
  | { kind: 'custom'; store: ContentStore }

/** A host and port to listen on. */
export interface ListenAddress {
  /** Address to listen on; default all interfaces. */
  host?: string
  port: number
}

/** Options of {@link createNode}. */
export interface NodeOptions {
  store: StoreOption
  /** Where the registry mirror listens. Default all interfaces, port 5000 (Spegel peers assume it). */
  /** Where the mirror listens (default `:5000`, all interfaces), and the networks its clients may come from. */
  registry?: Partial<ListenAddress> & { allowedNetworks?: readonly string[] }
  /** The router's options (listen addresses, data dir, bootstrapper…); its registry port is the mirror's. */
  router?: Omit<Libp2pRouterInit, 'registryPort' | 'logger'>
  /** The mirror handler's options (resolve timeout and retries, filters, credentials…). */
  mirror?: Omit<MirrorHandlerInit, 'store' | 'router' | 'logger'>
  /** Where `/metrics` (and the debug page) listen; `false` for none. Default all interfaces, port 9090. */
  metrics?: Partial<ListenAddress> | false
  /** Serve the debug page at `/debug/web/` on the metrics port (Spegel's `--debug-web-enabled`). Default true. */
  debugWeb?: boolean
  /**
   * Also export libp2p's own metrics (connections, streams, protocol traffic) in the same registry. Default true
   * (bench/daemon at 10 daemons: no difference in RSS, idle CPU or request rate beyond run-to-run noise).
   */
  libp2pMetrics?: boolean
  /**
   * Flash crowds (many nodes pulling the same new image at once): the nodes missing a blob elect one to fetch it
   * from upstream, which advertises containerd's download at once and serves it to the others while it arrives;
   * they wait up to `waitMs` (default 1500) for it; every node receiving a blob from a peer relays it to others
   * while it arrives (a tree, not a queue at the first holder's upload cap). Needs the containerd store with a
   * readable content directory (else off, with a log line). `false` turns it off. Default on.
   */
  flashCrowd?: false | { waitMs?: number }
  /** How long in-flight transfers may take to finish on `close()`, in ms. @default {@link SHUTDOWN_GRACE_MS} (10 s) */
  shutdownGraceMs?: number
  logger?: Logger
}

/** A running node. */
export interface KadmirrorNode {
  readonly store: ContentStore
  readonly router: Libp2pRouter
  readonly advertiser: Advertiser
  readonly mirror: MirrorHandler
  /** The mirror's base URL (`http://127.0.0.1:5000` when listening on all interfaces). */
  readonly registryUrl: string
  /** The metrics server's base URL, when there is one. */
  readonly metricsUrl: string | undefined
  readonly metrics: NodeMetrics
  /** Whether the node serves: ready (`/readyz` 200) once the router has a peer, until `close()` starts. */
  ready(): Promise<boolean>
  /**
   * Stops the node: `/readyz` turns 503, the mirror stops accepting, in-flight transfers get the grace period, then
   * everything started is closed in reverse order. Idempotent.
   */
  close(): Promise<void>
}

/** Opens the store an option names. */
async function openStore(option: StoreOption, log: Logger): Promise<{ store: ContentStore; owned: boolean }> {
  switch (option.kind) {
    case 'custom':
      return { store: option.store, owned: false }
    case 'oci-layout':
      return {
        store: await openOciLayoutStore({ directory: option.directory, create: option.create ?? true }),
        owned: true
      }
    case 'containerd':
      return {
        store: new PendingStore(
          () => openContainerdStore({ ...option, logger: log }),
          log,
          'the containerd store'
        ),
        owned: true
      }
  }
}

/** Runs each step in order, ignoring none of their errors but running every one; rethrows the first. */
async function inReverse(steps: ReadonlyArray<() => Promise<void>>): Promise<void> {
  let first: unknown
  for (const step of [...steps].reverse()) {
    try {
      await step()
    } catch (err) {
      first ??= err
    }
  }
  if (first !== undefined) throw first
}

/** What has been started so far, to stop on failure or close. */
class Started {
  readonly stops: Array<() => Promise<void>> = []

  add(stop: () => Promise<void>): void {
    this.stops.push(stop)
  }

  stopAll(): Promise<void> {
    return inReverse(this.stops.splice(0))
  }
}

/**
 * Creates and starts a node. On any failure while starting, what was started is stopped again before the error is
 * thrown (a port in use, an unreadable store, an invalid peer key).
 */
export async function createNode(options: NodeOptions): Promise<KadmirrorNode> {
  const log = options.logger ?? pino({ level: 'silent' })
  const started = new Started()
  try {
    return await startNode(options, log, started)
  } catch (err) {
    await started.stopAll().catch(() => {})
    throw err
  }
}

async function startNode(options: NodeOptions, log: Logger, started: Started): Promise<KadmirrorNode> {
  if (options.mirror?.spoolDir !== undefined)
    await mkdir(options.mirror.spoolDir, { recursive: true, mode: 0o700 })
  const { store, owned } = await openStore(options.store, log.child({ component: 'store' }))
  if (owned) started.add(() => store.close())
  const mirrorAddress = options.registry ?? {}
  const listener = await listenMirror({
    port: mirrorAddress.port ?? DEFAULT_REGISTRY_PORT,
    ...hostOf(mirrorAddress.host),
    ...(mirrorAddress.allowedNetworks === undefined ? {} : { allowedNetworks: mirrorAddress.allowedNetworks })
  })
  started.add(() => listener.close())
  const metricsRegistry = new Registry()
  const router = await createLibp2pRouter({
    ...options.router,
    registryPort: listener.port,
    ...(options.libp2pMetrics !== false
      ? {
          metrics: prometheusMetrics({
            registry: metricsRegistry,
            collectDefaultMetrics: false,
            preserveExistingMetrics: true
          })
        }
      : {}),
    logger: log.child({ component: 'router' })
  })
  started.add(() => router.close())
  // Content of filtered images (registry filters, mirrored registries) is not advertised; the mirror does not serve it.
  const filter = imageFilterOf(options.mirror ?? {})
  const advertised = filter === undefined ? store : filterImages(store, filter)
  if (advertised !== store) started.add(() => advertised.close())
  const advertiser = createAdvertiser({
    store: advertised,
    router,
    logger: log.child({ component: 'advertiser' })
  })
  started.add(() => advertiser.close())
  await advertiser.start()
  let closing = false
  const ready = async (): Promise<boolean> => !closing && (await router.ready())
  const inFlight = await inFlightOf(options, router, store, log)
  if (inFlight !== undefined) started.add(async () => inFlight.close())
  const mirror = listener.serve({
    ...options.mirror,
    store,
    router,
    ready,
    ...(inFlight === undefined
      ? {}
      : {
          inFlight,
          relay: true,
          flashCrowd: {
            selfId: router.peerId,
            ...(options.flashCrowd === false || options.flashCrowd?.waitMs === undefined
              ? {}
              : { waitMs: options.flashCrowd.waitMs })
          }
        }),
    logger: log.child({ component: 'mirror' })
  })
  if (inFlight !== undefined) mirror.events.on('upstream', (event) => inFlight.follow(event.digest as Digest))
  const metrics = createNodeMetrics({ mirror, router, advertiser }, metricsRegistry)
  logRequests(mirror, log)
  listener.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Every request passes here: the path by slicing, not a URL object per request.
    const url = req.url ?? '/'
    const query = url.indexOf('?')
    metrics.trackInflight(query < 0 ? url : url.slice(0, query), res)
  })
  const debug =
    options.debugWeb === false
      ? undefined
      : {
          state: new DebugState({ mirror, router, store }),
          measure: (image: string) => measure(image, { router, mirror, registryUrl: listener.url })
        }
  const server =
    options.metrics === false ? undefined : await startMetrics(options.metrics, metrics, router, debug)
  if (server !== undefined) started.add(() => server.close())
  log.info({ registry: listener.url, router: router.addresses(), metrics: server?.url }, 'running kadmirror')
  const grace = options.shutdownGraceMs ?? SHUTDOWN_GRACE_MS
  let closed: Promise<void> | undefined
  return {
    store,
    router,
    advertiser,
    mirror,
    registryUrl: listener.url,
    metricsUrl: server?.url,
    metrics,
    ready,
    close() {
      closing = true
      closed ??= drain(listener, grace, log).then(() => started.stopAll())
      return closed
    }
  }
}

/**
 * The tracker of containerd's downloads that serves them to peers while they arrive (flash crowds), or undefined
 * when the option is off or the store cannot show them (not containerd, or its content directory is not readable).
 */
async function inFlightOf(
  options: NodeOptions,
  router: Libp2pRouter,
  store: ContentStore,
  log: Logger
): Promise<InFlightTracker | undefined> {
  const option = options.store
  if (options.flashCrowd === false || option.kind !== 'containerd') return undefined
  const contentDir = option.contentDir ?? DEFAULT_CONTENT_DIR
  const readable = await access(contentDir, fsConstants.R_OK | fsConstants.X_OK).then(
    () => true,
    () => false
  )
  if (!readable) {
    log.warn({ contentDir }, 'flash crowd off: containerd content directory not readable')
    return undefined
  }
  const namespace = option.namespace ?? DEFAULT_CONTAINERD_NAMESPACE
  return new InFlightTracker({
    ingests: new IngestDirectory({ contentDir, namespace }),
    router,
    store,
    log: log.child({ component: 'in-flight' })
  })
}

/** One log line per mirror request (health probes at debug level). */
function logRequests(mirror: MirrorHandler, log: Logger): void {
  mirror.events.on('response', (e) => {
    const line = {
      method: e.method,
      path: e.path,
      status: e.status,
      durationMs: Math.round(e.durationMs * 10) / 10
    }
    const where = { registry: e.registry, source: e.source, peer: e.peer, bytes: e.bytes }
    if (e.kind === 'health') log.debug({ ...line, ...where }, 'request')
    else log.info({ ...line, ...where }, 'request')
  })
}

function hostOf(host: string | undefined): { host?: string } {
  return host === undefined || host === '' ? {} : { host }
}

async function startMetrics(
  address: Partial<ListenAddress> | undefined,
  metrics: NodeMetrics,
  router: Libp2pRouter,
  debug: DebugWeb | undefined
): Promise<MetricsServer> {
  return startMetricsServer({
    port: address?.port ?? DEFAULT_METRICS_PORT,
    ...hostOf(address?.host),
    metrics,
    router,
    ...(debug === undefined ? {} : { debug })
  })
}

/**
 * Stops accepting new connections and waits up to `graceMs` for in-flight requests to end, closing each
 * keep-alive connection as soon as it is idle. Resolves true when all ended in time.
 */
async function drain(listener: MirrorListener, graceMs: number, log: Logger): Promise<boolean> {
  const server = listener.server
  const deadline = Date.now() + graceMs
  let idle = false
  server.close(() => {
    idle = true
  })
  while (!idle && Date.now() < deadline) {
    server.closeIdleConnections()
    await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS))
  }
  if (!idle) log.warn({ graceMs }, 'in-flight transfers did not finish within the grace period; cutting them')
  return idle
}
