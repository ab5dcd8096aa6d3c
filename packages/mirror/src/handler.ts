/**
 * `createMirrorHandler`: the `/v2/` pull API of a node's mirror. Content in the node's own store is served
 * directly; otherwise the router finds peers that hold it and the bytes are streamed from one of them,
 * verified as they pass; when no peer has it, the answer is a fast 404 so the client goes upstream.
 */
import { timingSafeEqual } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type BlobPath,
  type ByteRange,
  createDigester,
  type Digest,
  type DistributionPath,
  digestAlgorithm,
  formatContentRange,
  InvalidPathError,
  isManifestOrIndexMediaType,
  type ManifestPath,
  OciError,
  parseDistributionPath,
  parseRange,
  RangeNotSatisfiableError,
  type RangeSpec,
  resolveRange,
  tagKey
} from '@kadmirror/oci'
import type { Provider, Router } from '@kadmirror/routing'
import {
  type ContentInfo,
  ContentNotFoundError,
  type ContentStore,
  filterImages,
  type ImageFilter
} from '@kadmirror/store'
import { type Logger, pino } from 'pino'
import { Agent, type Dispatcher } from 'undici'
import { ForwardingSink, type ReceiveResult, receiveBlob, SpoolSink } from './blob-transfer.ts'
import { Claims, type Election, MAX_FETCHERS } from './claims.ts'
import * as defaults from './constants.ts'
import { BufferPool, copyRange } from './copy.ts'
import { DigestMismatchError, InvalidMirrorOptionError, NotHeldError, PeerBusyError } from './errors.ts'
import type { MirrorEventMap, ResponseEvent, ResponseSource } from './events.ts'
import { HashPool, type StreamHasher } from './hash-pool.ts'
import {
  type GrowingContent,
  type GrowingLimits,
  type GrowingReader,
  type InFlightContent,
  openGrowing,
  sendGrowing
} from './in-flight.ts'
import type { PeerBody } from './peer-body.ts'
import {
  type FetchSession,
  fetchManifest,
  openBlob,
  openBlobRange,
  type PeerBlob,
  type PeerFetchConfig,
  type PeerManifest,
  type PeerPiece,
  type RaceResult,
  raceProviders
} from './peer-fetch.ts'
import {
  LatencyWindow,
  lookupOrder,
  PeerAvoidList,
  PeerRtt,
  type ProviderChoice,
  ProviderQueue,
  spreadOrder
} from './peers.ts'
import { forwardInPieces, nameLiars } from './piece-forwarding.ts'
import { type PieceSettings, receiveInPieces, recoverFromMismatch } from './piece-transfer.ts'
import { type RelaySource, Relays } from './relay.ts'
import { API_VERSION_HEADER, sendError } from './respond.ts'

/** Basic-auth credentials. */
export interface Credentials {
  username: string
  password: string
}

/** Options of {@link createMirrorHandler}. Times are in milliseconds. */
export interface MirrorHandlerInit {
  /** The node's own content, served first. */
  store: ContentStore
  /** Finds the peers that hold content this node lacks. */
  router: Router
  /** Resolve `name:tag` through the local store and the DHT (Spegel's `--resolve-tags`). Default true. */
  resolveTags?: boolean
  /**
   * Distinct peer hosts that must serve the same manifest digest before a tag is answered from peers (tags in the
   * node's own store are answered at once). 1 trusts any provider, as Spegel does: any host that can join the DHT
   * can then answer a tag with its own image. Default 1; the daemon defaults to 2 unless the DHT is a private
   * network. See docs/security.md.
   */
  tagQuorum?: number
  /**
   * The registry a tag request without `?ns=` refers to (Docker's `registry-mirrors` send none and mean Docker
   * Hub). Default `docker.io`; `null` answers such tag requests 404.
   */
  defaultTagRegistry?: string | null
  /** With no peer found within this time and no request in flight, answer 404. Default 20 (Spegel's). */
  resolveTimeoutMs?: number
  /** Peers tried after the first, per request (resumes included). Default 3 (Spegel's). */
  resolveRetries?: number
  /** Give up connecting to a peer after this. Default 500. Ignored when `dispatcher` is given. */
  connectTimeoutMs?: number
  /** Longest time a manifest or HEAD request spends on peers. Default 3000 (Spegel's). */
  manifestTimeoutMs?: number
  /** Longest wait for a peer's response headers to a blob request. Default 3000. */
  responseTimeoutMs?: number
  /** A peer sending no blob bytes for this long is replaced by the next, resuming where it stopped. Default 3000. */
  stallTimeoutMs?: number
  /**
   * Least throughput of a blob from a peer, in bytes per second of reading time, judged over `progressWindowMs`: a
   * slower (trickling) peer is replaced by the next, resuming where it stopped; with none left the response is cut.
   * Default 256 KiB/s; 0 turns the bound off.
   */
  minPeerBytesPerSecond?: number
  /** Reading time over which `minPeerBytesPerSecond` is judged (client back-pressure not counted). Default 10 000. */
  progressWindowMs?: number
  /** Least time before a second peer is asked while the first has not answered. Default 50 (Spegel's). */
  minHedgeDelayMs?: number
  /** A peer that sent wrong bytes is not asked again for this long. Default 10 min. */
  mismatchAvoidMs?: number
  /** A peer that failed (refused, timed out, 5xx, a bad answer; not a 404) is not asked again for this long. Default 5000. */
  failureAvoidMs?: number
  /**
   * Requests whose `registry/repository[:tag]` matches one of these are answered 404 (never mirrored), as
   * Spegel's `--registry-filters`. The registry is `?ns=` (empty when absent).
   */
  filters?: readonly RegExp[]
  /** Mirror only these registries (`?ns=` values); requests naming another get 404. Default: all. */
  registries?: readonly string[]
  /** Require these basic-auth credentials from clients (401 otherwise). Default: no auth. */
  credentials?: Credentials
  /** Credentials sent to peers' mirrors. Default: `credentials`. */
  peerCredentials?: Credentials
  /** Serve `GET /readyz` (200 once the router has peers) and `GET /livez`. Default true. */
  health?: boolean
  /**
   * What `/readyz` reports: ready or not. Default the router's `ready()` (it knows a peer); a daemon also turns it
   * false while it shuts down.
   */
  ready?: () => Promise<boolean>
  /**
   * Worker threads that hash blobs streamed from peers. Default 0: hashing on the main thread, which was faster in
   * every measurement here (SHA-256 runs at ~1.4 GB/s with the CPU's SHA extensions; a worker costs a copy of every
   * byte and ~10 MiB; one worker halved a forwarded hop's throughput on 2 cores).
   */
  hashThreads?: number
  /**
   * Receive a blob from peers whole and check its digest before its first byte goes to the client (a spool file in
   * `spoolDir`, unlinked at once). A corrupt or lying peer then never makes a pull fail: the answer is a 404 and
   * containerd pulls from upstream. False forwards bytes as they arrive (faster for large blobs, the last chunk held
   * back until the digest matches; containerd's commit fails once when a peer lied). Default true.
   */
  verifyBeforeForwarding?: boolean
  /**
   * Directory for spool files (a disk, not tmpfs: a spooled blob takes its size there while it is verified). Default
   * the system's temporary directory.
   */
  spoolDir?: string
  /**
   * Blobs of at least this many bytes are fetched from several peers at once (Range requests of `pieceBytes`),
   * written into a spool file at their offsets and verified whole; with `verifyBeforeForwarding: false` the client is
   * sent the landed prefix as it grows, the last 256 KiB held back until the digest matches. Default 32 MiB.
   */
  multiPeerThresholdBytes?: number
  /** Bytes per piece of a blob fetched from several peers. Default 8 MiB. */
  pieceBytes?: number
  /** Most peers fetching pieces of one blob at once; 1 fetches every blob from one peer at a time. Default 4. */
  maxPieceProviders?: number
  /**
   * Most blobs this node serves to peers at once (requests marked as forwarded by a peer's mirror); one more is
   * answered 429 and the asking mirror moves on to another provider at once. 0: no cap. Default 32.
   */
  maxPeerUploads?: number
  /**
   * When every provider asked answered 429 (at its upload cap), how long a blob request keeps trying — a new lookup
   * every 250–500 ms, so nodes that received the blob meanwhile are asked too — before answering 404. Default 5000.
   */
  busyWaitMs?: number
  /**
   * Which provider to ask first: `spread` (default) prefers the one that answered fastest, times a random factor so
   * that many nodes asking at once spread over the providers; `lookup` keeps the lookup's order.
   */
  providerOrder?: 'spread' | 'lookup'
  /**
   * Flash crowds (many nodes missing the same new blob at once): the nodes that miss a blob no peer has elect one
   * to fetch it from upstream (its client gets the 404 at once); the others wait up to `waitMs` for its bytes, which
   * it serves to them while they arrive (its `inFlight`). Give `inFlight` on every node that enables this: a node
   * whose client's download cannot be served makes the others wait `waitMs` for nothing. Default off.
   */
  flashCrowd?: FlashCrowdOptions
  /** Content this node is still receiving (its containerd's downloads), served to peers as it grows. Default none. */
  inFlight?: InFlightContent
  /**
   * Relay blobs while they arrive from peers: a blob being spooled is advertised and served to other peers from the
   * spool as it grows (they verify it), so that many nodes fetching one blob form a tree instead of queueing at its
   * first holder's upload cap. Needs the spool (`verifyBeforeForwarding` true). Default false.
   */
  relay?: boolean
  /**
   * Most peers one blob still arriving (in flight or relayed) is served to at once; more are answered 429 and look
   * for the nodes relaying it. Small, so that a crowd forms a deep tree whose every hop runs at the upstream's speed
   * (a node's uplink ÷ one download's rate: 1 Gbit/s ÷ 200 Mbit/s ≈ 5), not a wide star that splits one uplink
   * many ways. 0: only the upload cap. Default 4.
   */
  inFlightFanOut?: number
  /** HTTP client for peer requests. Default: an undici Agent with keep-alive and the connect timeout. */
  dispatcher?: Dispatcher
  /** Structured logger. Default silent. */
  logger?: Logger
}

/** Options of {@link MirrorHandlerInit.flashCrowd}. Times in ms. */
export interface FlashCrowdOptions {
  /** This node's id as peers' lookups report it (the libp2p peer id). */
  selfId: string
  /** Longest a node that lost the election waits for the elected node's bytes before a 404. Default 1500. */
  waitMs?: number
  /**
   * Longest time between a node's claim and its reading of the others' claims: twice what its first look and claim
   * took, at least 5 (or this, when shorter). Default 40.
   */
  settleMs?: number
}

/**
 * A Node request handler: `(req, res)` for `node:http` / `node:https`, or `(req, res, next)` as express
 * middleware, where requests outside `/v2/` and the health paths go to `next`.
 */
export interface MirrorHandler {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void
  /** `response` per request, `peer-failure`, `digest-mismatch`: for metrics and logs. */
  readonly events: EventEmitter<MirrorEventMap>
  /** Blobs being served to peers right now (what `maxPeerUploads` caps). */
  peerUploads(): number
  /** The most blobs served to peers at once since the handler was made (to size `maxPeerUploads`). */
  peakPeerUploads(): number
  /** Closes the peer connections this handler opened (not a `dispatcher` passed in). Idempotent. */
  close(): Promise<void>
}

const silent = pino({ level: 'silent' })
/** Content up to this size is streamed; larger content is copied with pooled buffers when the store has `open`. */
const SMALL_CONTENT_BYTES = 256 * 1024
/** Damaged local digests remembered; the set is cleared when full (a store that damaged this many is broken). */
const MAX_DAMAGED_DIGESTS = 10_000
const MIRRORED = defaults.MIRRORED_HEADER

interface Settings {
  store: ContentStore
  router: Router
  resolveTags: boolean
  tagQuorum: number
  defaultTagRegistry: string | undefined
  manifestTimeoutMs: number
  mismatchAvoidMs: number
  filters: readonly RegExp[]
  registries: ReadonlySet<string> | undefined
  expectedAuth: Buffer | undefined
  health: boolean
  ready: () => Promise<boolean>
  fetch: PeerFetchConfig
  hashes: HashPool
  buffers: BufferPool
  /** Where blobs from peers are spooled and verified before the first byte is sent; undefined: forwarded as they come. */
  spoolDir: string | undefined
  /** Large blobs from several peers at once (spooled in `spoolDir`); undefined: one peer at a time. */
  pieces: (PieceSettings & { thresholdBytes: number; spoolDir: string }) | undefined
  /** Blobs being served to peers now, and the most at once (0: no cap). */
  uploads: { active: number; max: number; peak: number }
  /** Which provider a session asks next. */
  choose: ProviderChoice
  /** Longest wait for a slot when every provider is at its upload cap, in ms. */
  busyWaitMs: number
  /** Local content found not to match its digest: not served from the store again. */
  damaged: Set<Digest>
  /** Blobs being spooled from peers, offered to other peers while they arrive; undefined: no relaying. */
  relays: Relays | undefined
  /** Peers reading each blob still arriving now, and the most allowed per blob (0: no cap). */
  inFlightReaders: { active: Map<Digest, number>; max: number }
  /** The flash-crowd election and how long a loser waits; undefined: off. */
  flashCrowd: { claims: Claims; waitMs: number } | undefined
  inFlight: InFlightContent | undefined
  events: EventEmitter<MirrorEventMap>
  log: Logger
  /** Aborted when the handler closes: ends work that outlives a request (finding a liar after the client was cut). */
  closing: AbortController
}

/** What one request became, for the `response` event. */
interface Outcome {
  source: ResponseSource
  registry?: string
  resolveMs?: number
  peer?: string
  bytes: number
}

/**
 * Creates the mirror handler. See {@link MirrorHandlerInit} for the options and their defaults.
 * @throws {InvalidMirrorOptionError} for a negative timeout or retry count.
 */
export function createMirrorHandler(init: MirrorHandlerInit): MirrorHandler {
  const connectTimeoutMs = nonNegative('connectTimeoutMs', init.connectTimeoutMs, defaults.CONNECT_TIMEOUT_MS)
  const ownDispatcher =
    init.dispatcher === undefined
      ? new Agent({
          connect: { timeout: connectTimeoutMs },
          keepAliveTimeout: defaults.KEEP_ALIVE_TIMEOUT_MS,
          connections: 64
        })
      : undefined
  const events = new EventEmitter<MirrorEventMap>()
  const peerCredentials = init.peerCredentials ?? init.credentials
  const fetchConfig: PeerFetchConfig = {
    dispatcher: init.dispatcher ?? (ownDispatcher as Dispatcher),
    resolveTimeoutMs: nonNegative('resolveTimeoutMs', init.resolveTimeoutMs, defaults.RESOLVE_TIMEOUT_MS),
    maxAttempts: 1 + nonNegative('resolveRetries', init.resolveRetries, defaults.RESOLVE_RETRIES),
    responseTimeoutMs: nonNegative('responseTimeoutMs', init.responseTimeoutMs, defaults.RESPONSE_TIMEOUT_MS),
    stallTimeoutMs: nonNegative('stallTimeoutMs', init.stallTimeoutMs, defaults.STALL_TIMEOUT_MS),
    minPeerBytesPerSecond: nonNegative(
      'minPeerBytesPerSecond',
      init.minPeerBytesPerSecond,
      defaults.MIN_PEER_BYTES_PER_SECOND
    ),
    progressWindowMs: nonNegative('progressWindowMs', init.progressWindowMs, defaults.PROGRESS_WINDOW_MS),
    minHedgeDelayMs: nonNegative('minHedgeDelayMs', init.minHedgeDelayMs, defaults.MIN_HEDGE_DELAY_MS),
    hedgePercentile: defaults.HEDGE_PERCENTILE,
    failureAvoidMs: nonNegative('failureAvoidMs', init.failureAvoidMs, defaults.FAILURE_AVOID_MS),
    maxManifestBytes: defaults.MAX_MANIFEST_BYTES,
    avoid: new PeerAvoidList(),
    latency: new LatencyWindow(defaults.HEDGE_WINDOW),
    rtt: new PeerRtt(),
    events
  }
  // Blob bodies from peers go through the pooled client, unless the caller chose how to reach peers.
  if (init.dispatcher === undefined)
    fetchConfig.blobClient = {
      connectTimeoutMs,
      headersTimeoutMs: fetchConfig.responseTimeoutMs,
      stallTimeoutMs: fetchConfig.stallTimeoutMs,
      maxHeaderBytes: defaults.MAX_HEADER_BYTES
    }
  if (peerCredentials !== undefined) fetchConfig.authorization = basicAuthorization(peerCredentials)
  const filter = imageFilterOf(init)
  const visible = filter === undefined ? undefined : filterImages(init.store, filter)
  const settings: Settings = {
    store: visible ?? init.store,
    router: init.router,
    resolveTags: init.resolveTags ?? true,
    tagQuorum: Math.max(1, Math.floor(nonNegative('tagQuorum', init.tagQuorum, 1))),
    defaultTagRegistry:
      init.defaultTagRegistry === null
        ? undefined
        : (init.defaultTagRegistry ?? defaults.DEFAULT_TAG_REGISTRY),
    manifestTimeoutMs: nonNegative('manifestTimeoutMs', init.manifestTimeoutMs, defaults.MANIFEST_TIMEOUT_MS),
    mismatchAvoidMs: nonNegative('mismatchAvoidMs', init.mismatchAvoidMs, defaults.MISMATCH_AVOID_MS),
    filters: init.filters ?? [],
    registries:
      init.registries === undefined || init.registries.length === 0 ? undefined : new Set(init.registries),
    expectedAuth:
      init.credentials === undefined ? undefined : Buffer.from(basicAuthorization(init.credentials)),
    health: init.health ?? true,
    ready: init.ready ?? (() => init.router.ready()),
    fetch: fetchConfig,
    buffers: new BufferPool(defaults.COPY_BUFFER_BUDGET_BYTES),
    damaged: new Set(),
    spoolDir: init.verifyBeforeForwarding === false ? undefined : (init.spoolDir ?? tmpdir()),
    pieces: pieceSettings(init),
    uploads: {
      active: 0,
      peak: 0,
      max: Math.floor(nonNegative('maxPeerUploads', init.maxPeerUploads, defaults.MAX_PEER_UPLOADS))
    },
    choose: init.providerOrder === 'lookup' ? lookupOrder : spreadOrder(fetchConfig.rtt as PeerRtt),
    busyWaitMs: nonNegative('busyWaitMs', init.busyWaitMs, defaults.BUSY_WAIT_MS),
    hashes: new HashPool(
      Math.floor(nonNegative('hashThreads', init.hashThreads, defaultHashThreads())),
      defaults.HASH_IN_FLIGHT_BUDGET_BYTES
    ),
    flashCrowd: flashCrowdOf(init),
    inFlight: init.inFlight,
    relays: init.relay === true && init.verifyBeforeForwarding !== false ? new Relays() : undefined,
    inFlightReaders: {
      active: new Map(),
      max: Math.floor(nonNegative('inFlightFanOut', init.inFlightFanOut, defaults.IN_FLIGHT_FAN_OUT))
    },
    events,
    log: init.logger ?? silent,
    closing: new AbortController()
  }

  const handler = ((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void => {
    const started = performance.now()
    const outcome: Outcome = { source: 'invalid', bytes: 0 }
    const path = pathOf(req.url ?? '/')
    const kind = endpointKind(path)
    if (kind === 'other' && next !== undefined) {
      next()
      return
    }
    res.once('close', () => {
      const event: ResponseEvent = {
        method: req.method ?? '',
        path,
        kind,
        source: outcome.source,
        status: res.statusCode,
        bytes: outcome.bytes,
        durationMs: performance.now() - started
      }
      if (outcome.registry !== undefined) event.registry = outcome.registry
      if (outcome.resolveMs !== undefined) event.resolveMs = outcome.resolveMs
      if (outcome.peer !== undefined) event.peer = outcome.peer
      events.emit('response', event)
    })
    handle(settings, req, res, outcome).catch((err: unknown) => {
      settings.log.error({ err, url: req.url }, 'mirror request failed')
      outcome.source = 'failed'
      if (!res.headersSent) sendError(res, 500, 'UNSUPPORTED', 'internal error')
      else res.destroy()
    })
  }) as MirrorHandler
  Object.defineProperty(handler, 'events', { value: events, enumerable: true })
  handler.peerUploads = () => settings.uploads.active
  handler.peakPeerUploads = () => settings.uploads.peak
  let closed: Promise<void> | undefined
  handler.close = () => {
    settings.closing.abort()
    closed ??= Promise.all([settings.hashes.close(), ownDispatcher?.close(), visible?.close()]).then(() => {})
    return closed
  }
  return handler
}

/**
 * The images a handler with these `filters` and `registries` may advertise and serve (undefined when it has neither:
 * every image): an image is refused when its registry is not mirrored or its `registry/repository[:tag]` matches a
 * filter; content of images without a name only when every registry is mirrored. Give the same filter to the
 * advertiser's store (`filterImages` from `@kadmirror/store`), so that filtered content is not advertised either.
 */
export function imageFilterOf(
  init: Pick<MirrorHandlerInit, 'filters' | 'registries'>
): ImageFilter | undefined {
  const filters = init.filters ?? []
  const registries =
    init.registries === undefined || init.registries.length === 0 ? undefined : new Set(init.registries)
  if (filters.length === 0 && registries === undefined) return undefined
  return (image) => {
    if (image === undefined) return registries === undefined
    if (registries !== undefined && !registries.has(image.slice(0, image.indexOf('/')))) return false
    return !filters.some((filter) => {
      filter.lastIndex = 0
      return filter.test(image)
    })
  }
}

/** Counts a blob upload to a peer until its response closes; false when the node serves its maximum already. */
/** Takes one of the reader slots of `digest` still arriving until `res` closes; false when all are taken. */
function takeInFlightReader(settings: Settings, digest: Digest, res: ServerResponse): boolean {
  const { active, max } = settings.inFlightReaders
  const readers = active.get(digest) ?? 0
  if (max > 0 && readers >= max) return false
  active.set(digest, readers + 1)
  res.once('close', () => {
    const left = (active.get(digest) ?? 1) - 1
    if (left > 0) active.set(digest, left)
    else active.delete(digest)
  })
  return true
}

function takeUpload(settings: Settings, res: ServerResponse): boolean {
  const uploads = settings.uploads
  if (uploads.max > 0 && uploads.active >= uploads.max) return false
  uploads.active++
  uploads.peak = Math.max(uploads.peak, uploads.active)
  res.once('close', () => uploads.active--)
  return true
}

/** The multi-peer settings, or undefined when blobs come from one peer at a time. */
function pieceSettings(init: MirrorHandlerInit): Settings['pieces'] {
  const maxProviders = Math.floor(
    nonNegative('maxPieceProviders', init.maxPieceProviders, defaults.MAX_PIECE_PROVIDERS)
  )
  const pieceBytes = Math.floor(nonNegative('pieceBytes', init.pieceBytes, defaults.PIECE_BYTES))
  if (maxProviders <= 1) return undefined
  if (pieceBytes < 1) throw new InvalidMirrorOptionError('pieceBytes must be at least 1')
  return {
    spoolDir: init.spoolDir ?? tmpdir(),
    thresholdBytes: nonNegative(
      'multiPeerThresholdBytes',
      init.multiPeerThresholdBytes,
      defaults.MULTI_PEER_THRESHOLD_BYTES
    ),
    pieceBytes,
    maxProviders,
    minSplitBytes: Math.max(1, Math.min(defaults.MIN_SPLIT_BYTES, Math.floor(pieceBytes / 4)))
  }
}

/** The flash-crowd settings, or undefined when it is off. */
function flashCrowdOf(init: MirrorHandlerInit): Settings['flashCrowd'] {
  const options = init.flashCrowd
  if (options === undefined) return undefined
  const claims = new Claims({
    router: init.router,
    selfId: options.selfId,
    settleMs: nonNegative('flashCrowd.settleMs', options.settleMs, defaults.CLAIM_SETTLE_MS),
    claimTtlMs: defaults.CLAIM_TTL_MS,
    lookupTimeoutMs: defaults.CLAIM_LOOKUP_TIMEOUT_MS
  })
  return { claims, waitMs: nonNegative('flashCrowd.waitMs', options.waitMs, defaults.FLASH_CROWD_WAIT_MS) }
}

function defaultHashThreads(): number {
  return 0
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isFinite(value) || value < 0)
    throw new InvalidMirrorOptionError(`${name} must be a non-negative number, got ${value}`)
  return value
}

function basicAuthorization(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`
}

/** The path of a request URL, without its query. */
function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q < 0 ? url : url.slice(0, q)
}

function endpointKind(path: string): ResponseEvent['kind'] {
  if (path === '/readyz' || path === '/livez') return 'health'
  if (path === '/v2' || path === '/v2/') return 'base'
  if (!path.startsWith('/v2/')) return 'other'
  if (/\/blobs\/[^/]*$/.test(path)) return 'blob'
  if (/\/manifests\/[^/]*$/.test(path)) return 'manifest'
  return 'other'
}

async function handle(
  settings: Settings,
  req: IncomingMessage,
  res: ServerResponse,
  outcome: Outcome
): Promise<void> {
  const url = req.url ?? '/'
  const method = req.method ?? ''
  const q = url.indexOf('?')
  const pathname = q < 0 ? url : url.slice(0, q)

  if (method !== 'GET' && method !== 'HEAD') {
    sendError(res, 405, 'UNSUPPORTED', `${method} is not supported: the mirror is read-only`, {
      allow: 'GET, HEAD'
    })
    return
  }
  if (settings.health && (pathname === '/livez' || pathname === '/readyz')) {
    outcome.source = 'meta'
    const ready = pathname === '/livez' || (await settings.ready().catch(() => false))
    res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' })
    res.end(method === 'HEAD' ? undefined : ready ? 'ok\n' : 'not ready\n')
    return
  }
  if (!authorized(settings, req)) {
    sendError(res, 401, 'UNAUTHORIZED', 'invalid or missing credentials', {
      'www-authenticate': 'Basic realm="kadmirror"'
    })
    return
  }

  let path: DistributionPath
  try {
    path = parseDistributionPath(url)
  } catch (err) {
    if (!(err instanceof InvalidPathError)) throw err
    // An endpoint the mirror does not serve is "not here" (clients then ask the next host); a malformed one is 400.
    // A tag that cannot exist names no manifest: 404 MANIFEST_UNKNOWN, as the reference registry and Spegel answer
    // (and the OCI conformance suite expects).
    if (err.code === 'MANIFEST_INVALID') return sendError(res, 404, 'MANIFEST_UNKNOWN', err.message)
    const status = err.code === 'UNSUPPORTED' ? 404 : err.status
    sendError(res, status, err.code, err.message)
    return
  }
  if (path.kind === 'base') {
    outcome.source = 'meta'
    const body = '{}'
    res.writeHead(200, {
      [API_VERSION_HEADER[0]]: API_VERSION_HEADER[1],
      'content-type': 'application/json; charset=utf-8',
      'content-length': body.length
    })
    res.end(method === 'HEAD' ? undefined : body)
    return
  }

  const missCode = path.kind === 'blob' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN'
  const registry =
    path.registry ??
    (path.kind === 'manifest' && path.tag !== undefined ? settings.defaultTagRegistry : undefined)
  if (registry !== undefined) outcome.registry = registry
  const filtered = filteredOut(settings, path, registry)
  if (filtered !== undefined) {
    outcome.source = 'filtered'
    sendError(res, 404, missCode, filtered)
    return
  }

  let range: RangeSpec | undefined
  const rangeHeader = req.headers.range
  if (path.kind === 'blob' && rangeHeader !== undefined) {
    try {
      range = parseRange(rangeHeader)
    } catch (err) {
      if (!(err instanceof OciError)) throw err
      sendError(res, err.status, err.code, err.message)
      return
    }
  }

  // The local store first.
  let digest: Digest | undefined = path.digest
  let reference: string | undefined
  if (path.kind === 'manifest' && path.tag !== undefined) {
    if (!settings.resolveTags || registry === undefined) {
      outcome.source = 'miss'
      const why = settings.resolveTags ? 'tag requests need ?ns=<registry>' : 'tag resolution is off'
      sendError(res, 404, missCode, why)
      return
    }
    try {
      reference = tagKey({ registry, repository: path.repository, tag: path.tag }) as string
      digest = await settings.store.resolve(reference)
    } catch (err) {
      // A reference whose parts are each valid but too long together (over 255 characters once Docker's `library/`
      // is added): a client mistake, not a server error.
      if (!(err instanceof OciError)) throw err
      sendError(res, err.status, err.code, err.message)
      return
    }
  }
  if (digest !== undefined && !settings.damaged.has(digest)) {
    const info = await settings.store.stat(digest)
    if (info !== undefined && (path.kind === 'blob' || isManifestOrIndexMediaType(info.mediaType ?? ''))) {
      if (
        path.kind === 'blob' &&
        method === 'GET' &&
        req.headers[MIRRORED] === 'true' &&
        !takeUpload(settings, res)
      ) {
        return sendBusy(settings, res, outcome)
      }
      const served = await serveLocal(settings, req, res, path, info, range, outcome)
      if (served) return
    }
  }
  if (req.headers[MIRRORED] === 'true') {
    // A peer forwarded this request: answer from this node's own store only (no loops), or from what it is receiving.
    if (path.kind === 'blob' && (await serveInFlight(settings, req, res, path, range, outcome))) return
    outcome.source = 'miss'
    // A blob this node lost the flash-crowd election for: the peer (which may have read this node's claim before it
    // was withdrawn) is told which node fetches it.
    const winner = path.kind === 'blob' ? settings.flashCrowd?.claims.winnerOf(path.digest) : undefined
    const named: Record<string, string> =
      winner === undefined ? {} : { [defaults.FETCHER_HEADER]: `${winner.id} ${winner.registryUrl}` }
    sendError(res, 404, missCode, 'not held by this node', named)
    return
  }

  // Then the peers.
  const key = reference ?? (digest as Digest)
  if (path.kind === 'manifest') await manifestFromPeers(settings, req, res, path, key, outcome)
  else await blobFromPeers(settings, req, res, path, range, outcome)
}

function authorized(settings: Settings, req: IncomingMessage): boolean {
  if (settings.expectedAuth === undefined) return true
  const given = Buffer.from(req.headers.authorization ?? '')
  return given.length === settings.expectedAuth.length && timingSafeEqual(given, settings.expectedAuth)
}

function filteredOut(
  settings: Settings,
  path: ManifestPath | BlobPath,
  registry: string | undefined
): string | undefined {
  if (
    settings.registries !== undefined &&
    path.registry !== undefined &&
    !settings.registries.has(path.registry)
  ) {
    return `registry ${path.registry} is not mirrored`
  }
  if (settings.filters.length === 0) return undefined
  const tag = path.kind === 'manifest' && path.tag !== undefined ? `:${path.tag}` : ''
  const subject = `${registry ?? ''}/${path.repository}${tag}`
  for (const filter of settings.filters) {
    filter.lastIndex = 0
    if (filter.test(subject)) return `${subject} is excluded by a registry filter`
  }
  return undefined
}

function contentHeaders(
  info: { digest: Digest; size: number },
  contentType: string,
  range: ByteRange | undefined
): Record<string, string | number> {
  const headers: Record<string, string | number> = {
    [API_VERSION_HEADER[0]]: API_VERSION_HEADER[1],
    'docker-content-digest': info.digest,
    etag: `"${info.digest}"`,
    'accept-ranges': 'bytes',
    'content-type': contentType,
    'content-length': range === undefined ? info.size : range.end - range.start + 1
  }
  if (range !== undefined) headers['content-range'] = formatContentRange(range, info.size)
  return headers
}

/** Resolves a client's range against a size; answers 416 and returns null when it cannot be satisfied. */
function clientRange(
  res: ServerResponse,
  spec: RangeSpec | undefined,
  size: number
): ByteRange | undefined | null {
  if (spec === undefined) return undefined
  try {
    return resolveRange(spec, size)
  } catch (err) {
    if (!(err instanceof RangeNotSatisfiableError)) throw err
    sendError(res, 416, 'RANGE_INVALID', err.message, { 'content-range': `bytes */${size}` })
    return null
  }
}

function notModified(req: IncomingMessage, res: ServerResponse, digest: Digest): boolean {
  const match = req.headers['if-none-match']
  if (
    match === undefined ||
    !match.split(',').some((tag) => tag.trim() === `"${digest}"` || tag.trim() === '*')
  ) {
    return false
  }
  res.writeHead(304, {
    [API_VERSION_HEADER[0]]: API_VERSION_HEADER[1],
    etag: `"${digest}"`,
    'docker-content-digest': digest
  })
  res.end()
  return true
}

/** Serves content from the node's store. Resolves false when it vanished before the read started. */
/** Answers a peer 429: this node serves its maximum of blobs to peers. */
function sendBusy(settings: Settings, res: ServerResponse, outcome: Outcome): void {
  outcome.source = 'busy'
  const { max } = settings.uploads
  sendError(res, 429, 'TOOMANYREQUESTS', `this node serves its maximum of ${max} blobs to peers; ask another`)
}

/**
 * Serves a peer's blob request from content this node is still receiving ({@link InFlightContent}), as it grows;
 * false when there is none (or it was committed meanwhile: the caller answers as for content not held). A download
 * that stops growing cuts the response: the peer's mirror resumes elsewhere or answers 404.
 */
async function serveInFlight(
  settings: Settings,
  req: IncomingMessage,
  res: ServerResponse,
  path: BlobPath,
  spec: RangeSpec | undefined,
  outcome: Outcome
): Promise<boolean> {
  const relay = settings.relays?.find(path.digest)
  if (relay !== undefined) {
    const limits = { ...growingLimits(), writtenEnd: relay.writtenEnd, abandoned: relay.abandoned }
    try {
      if (req.method === 'GET' && notArrived(spec, relay)) {
        outcome.source = 'busy'
        sendError(res, 429, 'TOOMANYREQUESTS', 'this node has not received those bytes yet; ask another')
        return true
      }
      return await sendInFlight(settings, req, res, { path, spec, outcome }, relay.size, relay.reader, limits)
    } finally {
      relay.reader.release()
    }
  }
  const found = await inFlightSoon(settings, path.digest, clientSignal(res))
  if (found === undefined) return false
  if ('stored' in found) {
    // Committed while the request was held: the store's content now.
    if (req.method === 'GET' && !takeUpload(settings, res)) {
      sendBusy(settings, res, outcome)
      return true
    }
    return serveLocal(settings, req, res, path, found.stored, spec, outcome)
  }
  const file = req.method === 'GET' ? await openGrowing(found) : undefined
  if (req.method === 'GET' && file === undefined) return false
  try {
    return await sendInFlight(settings, req, res, { path, spec, outcome }, found.size, file, growingLimits())
  } finally {
    await file?.close().catch(() => {})
  }
}

/**
 * True when a peer asks a relay for a range that starts past what has arrived in order (a piece of a blob that
 * comes in pieces): waiting for it would stall that peer's piece, so it is sent to another provider at once.
 */
function notArrived(spec: RangeSpec | undefined, relay: RelaySource): boolean {
  if (spec === undefined) return false
  try {
    return resolveRange(spec, relay.size).start > relay.writtenEnd()
  } catch {
    return false
  }
}

function growingLimits(): GrowingLimits {
  return { stallMs: defaults.GROWING_STALL_MS, pollMs: defaults.GROWING_POLL_MS }
}

/** Answers a peer with content still arriving (`reader`, undefined for HEAD): headers at once, bytes as they come. */
async function sendInFlight(
  settings: Settings,
  req: IncomingMessage,
  res: ServerResponse,
  asked: { path: BlobPath; spec: RangeSpec | undefined; outcome: Outcome },
  size: number,
  reader: GrowingReader | undefined,
  limits: GrowingLimits
): Promise<true> {
  const { path, outcome } = asked
  if (
    req.method === 'GET' &&
    (!takeInFlightReader(settings, path.digest, res) || !takeUpload(settings, res))
  ) {
    sendBusy(settings, res, outcome)
    return true
  }
  outcome.source = 'in-flight'
  const range = clientRange(res, asked.spec, size)
  if (range === null) return true
  res.writeHead(range === undefined ? 200 : 206, {
    ...contentHeaders({ digest: path.digest, size }, 'application/octet-stream', range),
    [defaults.ARRIVING_HEADER]: 'true'
  })
  if (req.method !== 'GET' || reader === undefined) {
    res.end()
    return true
  }
  // The answer goes at once, before the first bytes: a peer waiting for this download stops looking elsewhere.
  res.flushHeaders()
  const whole = range ?? { start: 0, end: size - 1 }
  outcome.bytes = await sendGrowing(res, reader, whole, limits).catch((err: unknown) => {
    settings.log.warn({ err, digest: path.digest }, 'in-flight content stopped; cutting the peer')
    res.destroy()
    return 0
  })
  return true
}

/**
 * The download of `digest` in flight on this node. When this node was elected to fetch it and its download has not
 * been found yet (containerd is starting it), the peer's request is held until it is, or until the blob is in the
 * store (a small one is committed before it is found), for at most FETCHER_HOLD_MS.
 */
async function inFlightSoon(
  settings: Settings,
  digest: Digest,
  signal: AbortSignal
): Promise<GrowingContent | { stored: ContentInfo } | undefined> {
  const inFlight = settings.inFlight
  if (inFlight === undefined) return undefined
  const until = performance.now() + defaults.FETCHER_HOLD_MS
  for (let poll = 0; ; poll++) {
    const growing = await inFlight.find(digest)
    if (growing !== undefined || settings.flashCrowd?.claims.fetching(digest) !== true) return growing
    // The store now and then only: many peers are held at once, and asking the store can cost a call to containerd.
    const look = poll % defaults.HOLD_STORE_CHECK_POLLS === defaults.HOLD_STORE_CHECK_POLLS - 1
    const stored = look ? await settings.store.stat(digest).catch(() => undefined) : undefined
    if (stored !== undefined) return { stored }
    if (performance.now() >= until || signal.aborted) return undefined
    if (!(await sleep(defaults.GROWING_POLL_MS, true, { signal }).catch(() => false))) return undefined
  }
}

async function serveLocal(
  settings: Settings,
  req: IncomingMessage,
  res: ServerResponse,
  path: ManifestPath | BlobPath,
  info: ContentInfo,
  spec: RangeSpec | undefined,
  outcome: Outcome
): Promise<boolean> {
  outcome.source = 'local'
  const contentType = path.kind === 'manifest' ? (info.mediaType as string) : 'application/octet-stream'
  const range = clientRange(res, spec, info.size)
  if (range === null) return true
  if (notModified(req, res, info.digest)) return true
  const headers = contentHeaders(info, contentType, range)
  if (req.method === 'HEAD') {
    res.writeHead(range === undefined ? 200 : 206, headers)
    res.end()
    return true
  }
  if (info.size <= SMALL_CONTENT_BYTES) return sendSmallLocal(settings, res, info, range, headers, outcome)
  const verify = coversWhole(range, info.size) && !peerVerifies(req)
  const buffer = settings.store.open === undefined ? undefined : settings.buffers.take()
  if (buffer !== undefined) return copyLocal(settings, res, info, { range, verify }, headers, outcome, buffer)
  // No random access, or the copy buffers' budget is spent (clients that read slowly hold them): a stream, whose
  // small buffers cost little however many clients hold them.
  return streamLocal(settings, res, info, { range, verify }, headers, outcome)
}

/**
 * Whether the request comes from a kadmirror peer that hashes what it receives (it says so): a whole blob sent to it
 * from the store is not hashed here as well. Any other client — containerd, Spegel, curl — gets the store's bytes
 * hashed as they go, the last chunk held back until they match.
 */
function peerVerifies(req: IncomingMessage): boolean {
  return req.headers[MIRRORED] === 'true' && req.headers[defaults.VERIFYING_HEADER] === 'sha256'
}

/** What part of a local blob to send (`range`; none: the whole), and whether to hash it against the digest. */
interface LocalSend {
  range: ByteRange | undefined
  verify: boolean
}

/** Whether a response of `range` (none: the whole) sends all `size` bytes, so that they can be checked against the digest. */
function coversWhole(range: ByteRange | undefined, size: number): boolean {
  return range === undefined || (range.start === 0 && range.end === size - 1)
}

/** Streams large local content; verified (when asked) as in {@link copyLocal}. */
async function streamLocal(
  settings: Settings,
  res: ServerResponse,
  info: ContentInfo,
  { range, verify }: LocalSend,
  headers: Record<string, string | number>,
  outcome: Outcome
): Promise<boolean> {
  let stream: Awaited<ReturnType<ContentStore['read']>>
  try {
    stream = await settings.store.read(info.digest, range)
  } catch (err) {
    if (err instanceof ContentNotFoundError) return false
    throw err
  }
  res.writeHead(range === undefined ? 200 : 206, headers)
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      outcome.bytes += chunk.byteLength
      done(null, chunk)
    }
  })
  const stages = verify ? [verifying(settings.hashes.create(digestAlgorithm(info.digest)), info.digest)] : []
  try {
    await pipeline([stream, ...stages, counted, res])
  } catch (err) {
    // A pipeline that never started (the client went away while the store opened the content) destroys nothing:
    // the store's stream would hold its file until a garbage collection.
    stream.destroy()
    localReadFailed(settings, res, info.digest, err, outcome)
  }
  return true
}

/**
 * A stream stage that hashes what passes and holds the last chunk back until the digest matches.
 * @throws {DigestMismatchError} (as the stream's error) when it does not.
 */
function verifying(hasher: StreamHasher, digest: Digest): Transform {
  let held: Buffer | undefined
  let digested = false
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hasher.update(chunk)
      // Downstream is full (the client is behind): do not sit on a partial hash batch meanwhile.
      if (held !== undefined && !this.push(held)) hasher.flush()
      held = chunk
      const ready = hasher.ready()
      if (ready === undefined) done()
      else ready.then(() => done(), done)
    },
    flush(done) {
      digested = true
      hasher
        .digest()
        .then(
          (actual) => (actual === digest ? done(null, held) : done(new DigestMismatchError(digest, actual))),
          done
        )
    },
    destroy(err, done) {
      if (!digested) hasher.abandon()
      done(err)
    }
  })
}

/**
 * Copies large local content with pooled buffers. A whole-content GET (`verify`) is hashed as it goes and its last
 * chunk held back until the digest matches: a node never hands out a complete wrong body from its own store.
 */
async function copyLocal(
  settings: Settings,
  res: ServerResponse,
  info: ContentInfo,
  { range, verify: hashing }: LocalSend,
  headers: Record<string, string | number>,
  outcome: Outcome,
  buffer: Buffer
): Promise<boolean> {
  const reader = await settings.store.open?.(info.digest).catch((err: unknown) => {
    settings.buffers.give(buffer)
    throw err
  })
  if (reader === undefined) {
    settings.buffers.give(buffer)
    return false
  }
  res.writeHead(range === undefined ? 200 : 206, headers)
  const verify = hashing
    ? { hasher: settings.hashes.create(digestAlgorithm(info.digest)), digest: info.digest }
    : undefined
  try {
    const span = range ?? { start: 0, end: info.size - 1 }
    outcome.bytes = await copyRange(reader, res, span, settings.buffers, buffer, verify)
  } catch (err) {
    localReadFailed(settings, res, info.digest, err, outcome)
  } finally {
    await reader.close()
  }
  return true
}

/** Reads small local content whole, checks its digest, and sends it (or the range asked for). */
async function sendSmallLocal(
  settings: Settings,
  res: ServerResponse,
  info: ContentInfo,
  range: ByteRange | undefined,
  headers: Record<string, string | number>,
  outcome: Outcome
): Promise<boolean> {
  let bytes: Buffer
  try {
    const chunks: Uint8Array[] = []
    for await (const chunk of await settings.store.read(info.digest)) chunks.push(chunk as Uint8Array)
    bytes = Buffer.concat(chunks)
  } catch (err) {
    if (err instanceof ContentNotFoundError) return false
    throw err
  }
  const hasher = createDigester(digestAlgorithm(info.digest))
  hasher.update(bytes)
  const actual = hasher.digest()
  if (actual !== info.digest || bytes.byteLength !== info.size) {
    quarantine(settings, info.digest, actual)
    return false
  }
  const body = range === undefined ? bytes : bytes.subarray(range.start, range.end + 1)
  res.writeHead(range === undefined ? 200 : 206, headers)
  outcome.bytes = body.byteLength
  res.end(body)
  return true
}

/** A local read ended before the whole response was sent: the response is cut, and not counted as a hit. */
function localReadFailed(
  settings: Settings,
  res: ServerResponse,
  digest: Digest,
  err: unknown,
  outcome: Outcome
): void {
  if (!res.destroyed) res.destroy()
  if (isClientGone(err)) return
  outcome.source = 'failed'
  if (err instanceof DigestMismatchError) quarantine(settings, digest, err.actual)
  else settings.log.warn({ err, digest }, 'local read failed mid-response')
}

/**
 * Local content that does not hash to its digest (damaged on disk): never served from this store again by this
 * handler (later requests go to peers), reported as a `digest-mismatch` with no peers, and logged as an error.
 */
function quarantine(settings: Settings, digest: Digest, actual: Digest): void {
  if (settings.damaged.size >= MAX_DAMAGED_DIGESTS) settings.damaged.clear()
  settings.damaged.add(digest)
  settings.fetch.events.emit('digest-mismatch', { peers: [], expected: digest, actual, local: true })
  settings.log.error(
    { digest, actual },
    'content in the local store does not match its digest; not serving it'
  )
}

function isClientGone(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return (
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    code === 'ERR_STREAM_UNABLE_TO_PIPE' || // piped to a response already destroyed
    code === 'ECONNRESET' ||
    code === 'EPIPE'
  )
}

/** An AbortSignal that fires when the client goes away before the response is complete. */
function clientSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) controller.abort()
  })
  return controller.signal
}

/** A new lookup of `key` and the attempts made on it; `fresh` asks the network even when a result is cached. */
function newSession(settings: Settings, key: string, signal: AbortSignal, fresh = false): FetchSession {
  const count = settings.fetch.maxAttempts + defaults.MAX_FREE_REFUSALS + 2
  return {
    queue: new ProviderQueue(
      settings.router,
      key,
      count,
      signal,
      settings.fetch.avoid,
      settings.choose,
      fresh
    ),
    attempts: 0,
    freeRefusals: 0,
    busy: 0,
    key,
    signal
  }
}

function missMessage(key: string, attempts: number, queueError: unknown): string {
  if (queueError !== undefined) return `no peer has ${key}: lookup failed (${String(queueError)})`
  return attempts === 0 ? `no peer has ${key}` : `no peer could serve ${key} after ${attempts} attempts`
}

async function manifestFromPeers(
  settings: Settings,
  req: IncomingMessage,
  res: ServerResponse,
  path: ManifestPath,
  key: string,
  outcome: Outcome
): Promise<void> {
  const started = performance.now()
  const lookupController = new AbortController()
  const signal = AbortSignal.any([
    clientSignal(res),
    AbortSignal.timeout(settings.manifestTimeoutMs),
    lookupController.signal
  ])
  const session = newSession(settings, key, signal)
  try {
    const accept = req.headers.accept
    const fetchOne = () =>
      raceProviders(settings.fetch, session, async (provider, attemptSignal) => {
        try {
          return await fetchManifest(settings.fetch, provider, path, accept, attemptSignal)
        } catch (err) {
          if (err instanceof DigestMismatchError) mismatch(settings, [provider], err)
          throw err
        }
      })
    const quorum = path.tag === undefined ? 1 : settings.tagQuorum
    const { result, hosts } = await reachQuorum(await fetchOne(), fetchOne, quorum)
    outcome.resolveMs = performance.now() - started
    const manifest = result.value
    if (manifest === undefined) {
      outcome.source = 'miss'
      const message =
        hosts > 0
          ? `no ${quorum} peer hosts agree on ${key} (tag quorum; the most that agree: ${hosts})`
          : missMessage(key, result.attempts, session.queue.error)
      sendError(res, 404, 'MANIFEST_UNKNOWN', message)
      return
    }
    outcome.source = 'peer'
    outcome.peer = manifest.provider.id
    settings.fetch.avoid.clear(manifest.provider.id)
    if (notModified(req, res, manifest.digest)) return
    res.writeHead(
      200,
      contentHeaders(
        { digest: manifest.digest, size: manifest.body.byteLength },
        manifest.mediaType,
        undefined
      )
    )
    if (req.method === 'HEAD') res.end()
    else {
      outcome.bytes = manifest.body.byteLength
      res.end(manifest.body)
    }
  } finally {
    lookupController.abort()
  }
}

/**
 * Asks further providers until `quorum` distinct peer hosts (registry URL hosts: several peer ids on one host count
 * once) have served the same manifest digest for a tag. Resolves the answer that completed the quorum, or none with
 * the most hosts that agreed.
 */
async function reachQuorum(
  first: RaceResult<PeerManifest>,
  next: () => Promise<RaceResult<PeerManifest>>,
  quorum: number
): Promise<{ result: RaceResult<PeerManifest>; hosts: number }> {
  if (quorum <= 1) return { result: first, hosts: first.value === undefined ? 0 : 1 }
  const agreeing = new Map<Digest, Set<string>>()
  let most = 0
  for (let result = first; result.value !== undefined; result = await next()) {
    const hosts = agreeing.get(result.value.digest) ?? new Set<string>()
    hosts.add(new URL(result.value.provider.registryUrl).hostname)
    agreeing.set(result.value.digest, hosts)
    most = Math.max(most, hosts.size)
    if (hosts.size >= quorum) return { result, hosts: most }
  }
  return { result: { attempts: 0 }, hosts: most }
}

function mismatch(settings: Settings, providers: readonly Provider[], err: DigestMismatchError): void {
  for (const provider of providers) settings.fetch.avoid.avoid(provider.id, settings.mismatchAvoidMs)
  settings.fetch.events.emit('digest-mismatch', {
    peers: providers.map((provider) => provider.id),
    expected: err.expected,
    actual: err.actual
  })
  settings.log.warn(
    { peers: providers.map((p) => p.id), expected: err.expected, actual: err.actual },
    'peer sent wrong bytes'
  )
}

async function blobFromPeers(
  settings: Settings,
  req: IncomingMessage,
  res: ServerResponse,
  path: BlobPath,
  spec: RangeSpec | undefined,
  outcome: Outcome
): Promise<void> {
  const started = performance.now()
  const lookupController = new AbortController()
  const client = clientSignal(res)
  const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
  const capped = method === 'HEAD' ? [AbortSignal.timeout(settings.manifestTimeoutMs)] : []
  const signal = AbortSignal.any([client, lookupController.signal, ...capped])
  let session = newSession(settings, path.digest, signal)
  try {
    const open = (offset: number, size: number | undefined) =>
      raceProviders(settings.fetch, session, (provider, attemptSignal) =>
        openBlob(settings.fetch, provider, path, method, offset, size, attemptSignal)
      )
    let first = await open(0, undefined)
    // Every provider asked was at its upload cap: wait for a slot (or for a node that received the blob meanwhile
    // and became a provider), a new lookup every few hundred ms, for at most busyWaitMs; then a 404 as for a miss.
    while (
      first.value === undefined &&
      session.busy > 0 &&
      performance.now() - started < settings.busyWaitMs
    ) {
      const waited = await sleep(defaults.BUSY_RETRY_MS * (1 + Math.random()), true, { signal }).catch(
        () => false
      )
      if (!waited) break
      session = newSession(settings, path.digest, signal)
      first = await open(0, undefined)
    }
    let elected = false
    if (
      first.value === undefined &&
      method === 'GET' &&
      session.busy === 0 &&
      settings.flashCrowd !== undefined
    ) {
      const crowd = settings.flashCrowd
      const fetch: Election = { role: 'fetch' }
      const election = await crowd.claims.elect(path.digest, signal).catch(() => fetch)
      elected = election.role === 'fetch'
      // Another node fetches it from upstream: its download is served to peers as soon as it starts.
      const deadline = performance.now() + crowd.waitMs
      const waited =
        election.role === 'wait'
          ? await awaitFetcher(settings, path, election.fetchers, deadline, signal)
          : undefined
      if (waited !== undefined) ({ first, session } = waited)
      const ms = Math.round(performance.now() - started)
      const fetchers = election.role === 'wait' ? election.fetchers.map((f) => f.registryUrl) : []
      const found = waited !== undefined
      settings.log.debug({ digest: path.digest, elected, fetchers, found, ms }, 'flash crowd')
    }
    outcome.resolveMs = performance.now() - started
    if (first.value === undefined) {
      outcome.source = 'miss'
      sendError(res, 404, 'BLOB_UNKNOWN', missMessage(path.digest, first.attempts, session.queue.error))
      if (method === 'GET' && !client.aborted)
        settings.events.emit('upstream', { digest: path.digest, elected })
      return
    }
    const size = first.value.size
    outcome.source = 'peer'
    outcome.peer = first.value.provider.id
    const range = clientRange(res, spec, size)
    if (range === null || notModified(req, res, path.digest)) {
      first.value.body?.discard()
      return
    }
    const headers = contentHeaders({ digest: path.digest, size }, 'application/octet-stream', range)
    const status = range === undefined ? 200 : 206
    if (method === 'HEAD') {
      res.writeHead(status, headers)
      res.end()
      return
    }
    const transfer: Transfer = {
      path,
      size,
      range: range ?? { start: 0, end: size - 1 },
      status,
      headers,
      first: first.value,
      resume: (offset) => open(offset, size),
      next: (waitMs) => session.queue.take(waitMs),
      alone: () => session.queue.exhausted,
      openRange: (provider, start, end) =>
        openBlobRange(settings.fetch, provider, path, { start, end, size }, signal)
    }
    if (settings.spoolDir !== undefined) await spoolThenServe(settings, res, transfer, outcome)
    else {
      const pieced = inPieces(settings, transfer)
      if (pieced !== undefined) await forwardPieces(settings, res, transfer, pieced, outcome)
      else await forward(settings, res, transfer, outcome)
    }
  } finally {
    lookupController.abort()
  }
}

/**
 * A loser's wait for the elected node's download: asks the `fetchers` directly, in turn, every FLASH_CROWD_POLL_MS
 * (the elected one serves its download as soon as it starts, before its provider record has spread), re-reads the
 * claims now and then, and looks the blob up every few polls — at once when a fetcher is at its upload cap or its
 * fan-out (the nodes receiving from it relay the blob). Resolves the first peer answer, or undefined once `deadline`
 * (ms, `performance.now()`) passed: the worst case stays the normal pull plus the wait.
 */
async function awaitFetcher(
  settings: Settings,
  path: BlobPath,
  initialFetchers: Provider[],
  deadline: number,
  signal: AbortSignal
): Promise<{ first: RaceResult<PeerBlob>; session: FetchSession } | undefined> {
  let fetchers = initialFetchers
  /** Winners named by claimers that lost: asked first whatever the claims say (their claim may not show yet). */
  let winners: Provider[] = []
  for (let round = 1; performance.now() < deadline && !signal.aborted; round++) {
    // The claims again now and then: the claimer seen first may have lost and withdrawn since.
    if (round % defaults.FLASH_CROWD_LOOKUP_ROUNDS === 2)
      fetchers = withFirst(winners, await currentFetchers(settings, path, fetchers, signal))
    let busy = false
    const named: Provider[] = []
    for (const fetcher of fetchers) {
      const direct = await openBefore(settings, fetcher, path, deadline, signal)
      if (direct === 'busy') busy = true
      else if (direct !== undefined && 'redirect' in direct) named.push(direct.redirect)
      else if (direct !== undefined)
        return { first: { value: direct, attempts: 1 }, session: newSession(settings, path.digest, signal) }
    }
    // A claimer that lost named the winner: ask it next, at once.
    const fresh = named.filter((p) => !fetchers.some((f) => f.id === p.id))
    if (fresh.length > 0) {
      winners = withFirst(fresh, winners)
      fetchers = withFirst(winners, fetchers)
      continue
    }
    // A fetcher at its upload cap: the nodes receiving from it relay the blob; look them up now.
    const lookupMs = busy ? defaults.CLAIM_LOOKUP_TIMEOUT_MS : defaults.FLASH_CROWD_LOOKUP_TIMEOUT_MS
    const lookupUntil = Math.min(deadline, performance.now() + lookupMs)
    if (
      (busy || round % defaults.FLASH_CROWD_LOOKUP_ROUNDS === 0) &&
      (await providerFound(settings, path.digest, lookupUntil, signal))
    ) {
      const session = newSession(settings, path.digest, signal)
      const first = await raceProviders(settings.fetch, session, (provider, attemptSignal) =>
        openBlob(settings.fetch, provider, path, 'GET', 0, undefined, attemptSignal)
      )
      if (first.value !== undefined) return { first, session }
    }
    const pause = Math.min(defaults.FLASH_CROWD_POLL_MS * (busy ? 4 : 1), deadline - performance.now())
    if (pause > 0 && !(await sleep(pause, true, { signal }).catch(() => false))) return undefined
  }
  return undefined
}

/** `first`, then the others of `rest`, at most MAX_FETCHERS. */
function withFirst(first: Provider[], rest: Provider[]): Provider[] {
  const others = rest.filter((p) => !first.some((f) => f.id === p.id))
  return [...first, ...others].slice(0, MAX_FETCHERS)
}

/** The claimers of the blob now (a short lookup), or `known` when none answered in time. */
async function currentFetchers(
  settings: Settings,
  path: BlobPath,
  known: Provider[],
  signal: AbortSignal
): Promise<Provider[]> {
  const claims = settings.flashCrowd?.claims
  if (claims === undefined) return known
  const found = await claims
    .fetchers(path.digest, defaults.FLASH_CROWD_LOOKUP_TIMEOUT_MS, signal)
    .catch(() => [] as Provider[])
  return found.length > 0 ? found : known
}

/**
 * `provider`'s answer to a GET of `path` if it comes before `deadline`; `busy` when it is at its upload cap (429),
 * `redirect` when it does not hold the blob but names the node that fetches it, undefined when it refused otherwise
 * or was late.
 */
async function openBefore(
  settings: Settings,
  provider: Provider,
  path: BlobPath,
  deadline: number,
  signal: AbortSignal
): Promise<PeerBlob | 'busy' | { redirect: Provider } | undefined> {
  const remaining = Math.ceil(deadline - performance.now())
  if (remaining <= 0) return undefined
  // Only the wait for the answer is bounded by the deadline; the body then runs under the request's signal.
  const late = new AbortController()
  const timer = setTimeout(() => late.abort(), remaining)
  try {
    return await openBlob(
      settings.fetch,
      provider,
      path,
      'GET',
      0,
      undefined,
      AbortSignal.any([signal, late.signal])
    )
  } catch (err) {
    if (err instanceof NotHeldError && err.fetcher !== undefined)
      return { redirect: { ...err.fetcher, addresses: [] } }
    return err instanceof PeerBusyError ? 'busy' : undefined
  } finally {
    clearTimeout(timer)
  }
}

/**
 * One lookup of `digest` that asks the network (up to `deadline`, ms `performance.now()`); true when a provider
 * answered (the router caches it for the fetch that follows).
 */
async function providerFound(
  settings: Settings,
  digest: Digest,
  deadline: number,
  signal: AbortSignal
): Promise<boolean> {
  const remaining = Math.ceil(deadline - performance.now())
  if (remaining <= 0 || signal.aborted) return false
  const bounded = AbortSignal.any([signal, AbortSignal.timeout(remaining)])
  try {
    for await (const _ of settings.router.lookup(digest, { count: 1, fresh: true, signal: bounded }))
      return true
  } catch {}
  return false
}

/** A blob transfer from peers, once the first peer answered. */
interface Transfer {
  path: BlobPath
  size: number
  /** The client's range (the whole blob when it asked for none). */
  range: ByteRange
  status: 200 | 206
  headers: Record<string, string | number>
  first: PeerBlob
  resume: (offset: number) => Promise<{ value?: PeerBlob }>
  /** Another provider from the lookup (for pieces), waiting at most `waitMs`. */
  next: (waitMs: number) => Promise<Provider | undefined>
  /** True when the lookup has ended and named no other provider than the ones taken (pieces cannot spread). */
  alone: () => boolean
  /** Bytes `[start, end)` from `provider`. */
  openRange: (provider: Provider, start: number, end: number) => Promise<PeerPiece>
}

/**
 * Streams the blob to the client as it arrives (`verifyBeforeForwarding: false`): the last chunk is held back until
 * the digest matches; a mismatch or a blob no peer can finish cuts the response (containerd resumes with Range, and a
 * mismatch fails its commit once).
 */
async function forward(
  settings: Settings,
  res: ServerResponse,
  transfer: Transfer,
  outcome: Outcome
): Promise<void> {
  res.writeHead(transfer.status, transfer.headers)
  const sink = new ForwardingSink(res, transfer.range)
  const result = await receiveBlob(
    settings,
    transfer.path,
    transfer.size,
    transfer.first,
    transfer.resume,
    sink
  )
  outcome.bytes = sink.sent
  if (result.kind !== 'verified') sink.drop()
  if (result.kind === 'gone') return
  if (result.kind === 'verified') {
    for (const provider of result.contributors) settings.fetch.avoid.clear(provider.id)
    sink.finish()
    outcome.bytes = sink.sent
    return
  }
  if (result.kind === 'mismatch')
    mismatch(settings, result.contributors, new DigestMismatchError(transfer.path.digest, result.actual))
  outcome.source = 'failed'
  res.destroy()
}

/** A transfer in pieces: the settings, and the first peer's answer (its body from byte 0). */
interface InPieces {
  pieces: NonNullable<Settings['pieces']>
  first: PeerBlob & { body: PeerBody }
}

/** The pieces of `transfer` when it is large enough to come from several peers at once and more than one provider may exist, else undefined. */
function inPieces(settings: Settings, transfer: Transfer): InPieces | undefined {
  const { pieces } = settings
  const body = transfer.first.body
  if (pieces === undefined || transfer.size < pieces.thresholdBytes || body === undefined) return undefined
  // One provider in all: its bytes come faster in one stream than in pieces through a reorder file. A blob still
  // arriving at the peer is nowhere whole yet: pieces past what has arrived would be refused.
  if (transfer.alone() || transfer.first.arriving === true) return undefined
  return { pieces, first: { ...transfer.first, body } }
}

/**
 * Forwards a large blob from several peers as its pieces land (`verifyBeforeForwarding: false`); one peer at a time
 * when no spool file can be made.
 */
async function forwardPieces(
  settings: Settings,
  res: ServerResponse,
  transfer: Transfer,
  { pieces, first }: InPieces,
  outcome: Outcome
): Promise<void> {
  const spool = await SpoolSink.create(pieces.spoolDir, res).catch((err: unknown) => {
    settings.log.warn({ err, dir: pieces.spoolDir }, 'cannot make a spool file; forwarding from one peer')
  })
  if (spool === undefined) return forward(settings, res, transfer, outcome)
  // Whole copies that find a liar run after the client's response is cut: they end when the handler closes.
  const closing = settings.closing.signal
  const detached = {
    get destroyed() {
      return closing.aborted
    }
  }
  const whole = { start: 0, end: transfer.size, size: transfer.size }
  const copies = {
    whole: (provider: Provider) => openBlobRange(settings.fetch, provider, transfer.path, whole, closing),
    spool: () => SpoolSink.create(pieces.spoolDir, detached)
  }
  const sources = { first, next: transfer.next, open: transfer.openRange }
  const begin = () => res.writeHead(transfer.status, transfer.headers)
  try {
    const ended = await forwardInPieces(settings, pieces, res, transfer, sources, spool, begin)
    outcome.bytes = ended.sent
    const { result } = ended
    if (result.kind === 'verified') {
      for (const provider of result.contributors) settings.fetch.avoid.clear(provider.id)
      return
    }
    if (result.kind === 'gone') return
    outcome.source = 'failed'
    // Nothing sent yet: a clean miss, and containerd pulls from upstream at once.
    const why = result.kind === 'mismatch' ? 'peers sent wrong bytes' : 'no peer could finish it'
    if (!ended.begun) sendError(res, 404, 'BLOB_UNKNOWN', `${transfer.path.digest}: ${why}`)
    if (result.kind !== 'mismatch') return
    const liars = await nameLiars(settings, transfer, { spool, contributions: ended.contributions }, copies)
    if (liars.length > 0)
      mismatch(settings, liars, new DigestMismatchError(transfer.path.digest, result.actual))
  } finally {
    await spool.close()
  }
}

/** Sends a verified spool's `range` with the copy pool's buffers (no fresh buffer per chunk), else as a stream. */
async function sendSpooled(
  settings: Settings,
  res: ServerResponse,
  spool: SpoolSink,
  size: number,
  range: ByteRange,
  outcome: Outcome
): Promise<void> {
  const buffer = settings.buffers.take()
  if (buffer !== undefined) {
    outcome.bytes = await copyRange(spool.reader(size), res, range, settings.buffers, buffer).catch(() => {
      res.destroy()
      return 0
    })
    return
  }
  const stream = spool.stream(range)
  stream.on('data', (chunk: Buffer) => {
    outcome.bytes += chunk.byteLength
  })
  await pipeline(stream, res).catch(() => res.destroy())
}

/**
 * Receives the blob into `spool`: from several peers at once when it is large enough (pieces), else from one at a
 * time. When pieces from several peers do not hash to the digest, the blob is fetched again whole from one
 * contributor at a time: the copy that verifies is served (its spool returned) and the peers whose bytes differ
 * from it are reported as liars.
 */
async function receiveSpooled(
  settings: Settings,
  res: ServerResponse,
  transfer: Transfer,
  spool: SpoolSink
): Promise<{ result: ReceiveResult; spool: SpoolSink }> {
  const { path, size, first } = transfer
  const pieced = inPieces(settings, transfer)
  if (pieced === undefined)
    return { result: await receiveBlob(settings, path, size, first, transfer.resume, spool), spool }
  const sources = { first: pieced.first, next: transfer.next, open: transfer.openRange }
  const received = await receiveInPieces(settings, pieced.pieces, path, size, sources, spool)
  if (received.result.kind !== 'mismatch' || received.contributions.size < 2) return { ...received, spool }
  const recovered = await recoverFromMismatch(
    settings,
    path,
    size,
    { spool, contributions: received.contributions },
    (provider) => transfer.openRange(provider, 0, size),
    () => SpoolSink.create(settings.spoolDir as string, res)
  )
  if (recovered.liars.length > 0)
    mismatch(settings, recovered.liars, new DigestMismatchError(path.digest, received.result.actual))
  if (recovered.spool === undefined) return { ...received, spool }
  return { result: { kind: 'verified', contributors: [] }, spool: recovered.spool }
}

/**
 * Receives the whole blob into a spool file, checks its digest, and only then answers (the default): no byte of a
 * wrong blob ever reaches the client, and when peers fail or lie the answer is a clean 404 — containerd then pulls
 * the blob from upstream, as it would without the mirror.
 */
async function spoolThenServe(
  settings: Settings,
  res: ServerResponse,
  transfer: Transfer,
  outcome: Outcome
): Promise<void> {
  let spool: SpoolSink
  try {
    spool = await SpoolSink.create(settings.spoolDir as string, res)
  } catch (err) {
    settings.log.warn(
      { err, dir: settings.spoolDir },
      'cannot make a spool file; forwarding unverified-first'
    )
    return forward(settings, res, transfer, outcome)
  }
  // Nothing goes to the client until the blob is verified, which can take longer than the server's idle timeout
  // (a large blob from slow peers); the transfer itself is bounded by the peers' stall and progress limits.
  const restoreIdleTimeout = suspendIdleTimeout(res)
  let relayed = relayWhileReceiving(settings, transfer.path.digest, spool, transfer.size)
  let verified = false
  try {
    const { path, size } = transfer
    const received = await receiveSpooled(settings, res, transfer, spool)
    restoreIdleTimeout()
    if (received.spool !== spool) {
      relayed?.(true) // its relay read the copy that failed
      relayed = undefined
      await spool.close()
      spool = received.spool
    }
    let result = received.result
    if (result.kind === 'verified')
      result = await spool.flushed().then(
        () => result,
        () => ({ kind: 'unfinished', position: size }) as const
      )
    if (result.kind === 'gone') return
    if (spool.failure !== undefined)
      settings.log.warn({ err: spool.failure, digest: path.digest }, 'spool write failed')
    if (result.kind !== 'verified') {
      if (result.kind === 'mismatch')
        mismatch(settings, result.contributors, new DigestMismatchError(path.digest, result.actual))
      outcome.source = 'failed'
      const why = result.kind === 'mismatch' ? 'peers sent wrong bytes' : 'no peer could finish it'
      sendError(res, 404, 'BLOB_UNKNOWN', `${path.digest}: ${why}`)
      return
    }
    verified = true
    for (const provider of result.contributors) settings.fetch.avoid.clear(provider.id)
    res.writeHead(transfer.status, transfer.headers)
    // An empty blob (a range can only be of bytes that exist): nothing to read back.
    if (size === 0) return void res.end()
    await sendSpooled(settings, res, spool, size, transfer.range, outcome)
  } finally {
    restoreIdleTimeout()
    relayed?.(!verified)
    await spool.close()
  }
}

/**
 * Offers the blob being received into `spool` to other peers (advertised at once) when relaying is on and the blob
 * is worth it; resolves the function that ends the offer (`failed`: its readers are cut and, unless the store holds
 * the blob, its record withdrawn), or undefined when nothing was offered.
 */
function relayWhileReceiving(
  settings: Settings,
  digest: Digest,
  spool: SpoolSink,
  size: number
): ((failed: boolean) => void) | undefined {
  if (settings.relays === undefined || size < defaults.RELAY_MIN_BYTES) return undefined
  const offer = settings.relays.offer(digest, spool, size)
  if (!offer.first) return undefined
  settings.router.advertise([digest]).catch(() => {})
  return (failed) => {
    offer.end(failed)
    if (failed) void withdrawUnlessHeld(settings, digest)
  }
}

async function withdrawUnlessHeld(settings: Settings, digest: Digest): Promise<void> {
  if ((await settings.store.stat(digest).catch(() => undefined)) !== undefined) return
  await settings.router.withdraw([digest]).catch(() => {})
}

/**
 * Turns off the idle timeout of the client's connection (the server's `timeout`, which closes a socket with no
 * traffic either way) while the handler prepares an answer; returns the function that turns it back on.
 */
function suspendIdleTimeout(res: ServerResponse): () => void {
  const socket = res.socket
  const timeoutMs = socket?.timeout
  if (socket == null || timeoutMs === undefined || timeoutMs === 0) return () => {}
  socket.setTimeout(0)
  let restored = false
  return () => {
    if (restored) return
    restored = true
    if (!socket.destroyed) socket.setTimeout(timeoutMs)
  }
}
