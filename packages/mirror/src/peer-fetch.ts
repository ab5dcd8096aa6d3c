/**
 * Fetching from peers: ask the providers of a key one after another (a second one when the first is slow),
 * check what they answer, and hand back the first good answer. Every wait is bounded.
 */
import type { EventEmitter } from 'node:events'
import {
  type BlobPath,
  createDigester,
  type Digest,
  digestAlgorithm,
  formatDistributionPath,
  isManifestOrIndexMediaType,
  type ManifestPath,
  parseDigest
} from '@kadmirror/oci'
import type { Provider } from '@kadmirror/routing'
import type { Dispatcher } from 'undici'
import { type BlobClientOptions, requestBlob } from './blob-client.ts'
import {
  ARRIVING_HEADER,
  BUSY_AVOID_MS,
  FAST_REFUSAL_MS,
  FETCHER_HEADER,
  MAX_FREE_REFUSALS,
  MIRRORED_HEADER,
  VERIFYING_HEADER
} from './constants.ts'
import {
  DigestMismatchError,
  NotHeldError,
  PeerAnswerError,
  PeerBusyError,
  PeerTooSlowError
} from './errors.ts'
import type { MirrorEventMap, PeerFailureKind } from './events.ts'
import { type PeerBody, skipping, undiciBody } from './peer-body.ts'
import type { LatencyWindow, PeerAvoidList, PeerRtt, ProviderQueue } from './peers.ts'

/** The settings a fetch runs with (resolved from {@link MirrorHandlerInit}). */
export interface PeerFetchConfig {
  dispatcher: Dispatcher
  /** Limits of the pooled blob client (blob-client.ts); undefined: blobs go through `dispatcher` too. */
  blobClient?: BlobClientOptions
  /** `Authorization` header sent to peers, when the mirrors use basic auth. */
  authorization?: string
  resolveTimeoutMs: number
  /** Most peers asked for one request, resumes included. */
  maxAttempts: number
  responseTimeoutMs: number
  stallTimeoutMs: number
  /** Least throughput of a blob body from a peer, in bytes per second of reading time (0: none). */
  minPeerBytesPerSecond: number
  /** Reading time over which that throughput is judged, in ms. */
  progressWindowMs: number
  minHedgeDelayMs: number
  hedgePercentile: number
  failureAvoidMs: number
  maxManifestBytes: number
  avoid: PeerAvoidList
  latency: LatencyWindow
  /** Each peer's answer time to blob requests (for choosing whom to ask); none: not measured. */
  rtt?: PeerRtt
  events: EventEmitter<MirrorEventMap>
}

/** A verified manifest from a peer. */
export interface PeerManifest {
  provider: Provider
  digest: Digest
  mediaType: string
  body: Buffer
}

/** A peer's answer to a blob request: its size, and (for GET) the body from byte `offset`. */
export interface PeerBlob {
  provider: Provider
  /** Size of the whole blob, in bytes. */
  size: number
  /** The body, starting at the blob's byte `offset` (GET only). */
  body?: PeerBody
  /** The peer is still receiving the blob (it said so with {@link ARRIVING_HEADER}). */
  arriving?: boolean
}

/** Outcome of a race over peers: the first good answer, or none, with the number of peers asked. */
export interface RaceResult<T> {
  value?: T
  attempts: number
}

/** State one request keeps across races (a resume is a new race on the same queue). */
export interface FetchSession {
  queue: ProviderQueue
  /** Peers asked so far, less the fast refusals not charged (see {@link FAST_REFUSAL_MS}). */
  attempts: number
  /** Fast refusals not charged to the attempts so far. */
  freeRefusals: number
  /** Peers that answered 429 (busy: at their upload cap) so far. */
  busy: number
  /** The DHT key, for events. */
  key: string
  signal: AbortSignal
}

/** A request to one provider in flight: how to cancel it, and when it began (performance.now ms). */
interface Attempt {
  controller: AbortController
  provider: Provider
  began: number
}

type Outcome<T> =
  | { ok: true; provider: Provider; value: T }
  | { ok: false; provider: Provider; error: unknown }

const HEDGE = Symbol('hedge')
const ABORTED = Symbol('aborted')

/**
 * Races `attempt` over the session's providers: starts with one, adds another each time the hedge delay
 * passes without an answer, moves on at once when one fails, and returns the first success (the others are
 * cancelled). Gives up when no provider turns up within the resolve timeout, the attempts are used up, or
 * the session's signal aborts.
 */
export async function raceProviders<T>(
  config: PeerFetchConfig,
  session: FetchSession,
  attempt: (provider: Provider, signal: AbortSignal) => Promise<T>
): Promise<RaceResult<T>> {
  const inflight = new Map<Promise<Outcome<T>>, Attempt>()
  const start = (provider: Provider): void => {
    session.attempts++
    const controller = new AbortController()
    const signal = AbortSignal.any([controller.signal, session.signal])
    const began = performance.now()
    const promise = attempt(provider, signal).then(
      (value): Outcome<T> => {
        config.latency.observe(performance.now() - began)
        return { ok: true, provider, value }
      },
      (error: unknown): Outcome<T> => ({ ok: false, provider, error })
    )
    inflight.set(promise, { controller, provider, began })
  }
  const aborted = new Promise<typeof ABORTED>((resolve) => {
    if (session.signal.aborted) resolve(ABORTED)
    session.signal.addEventListener('abort', () => resolve(ABORTED), { once: true })
  })

  try {
    while (!session.signal.aborted) {
      if (inflight.size === 0) {
        if (session.attempts >= config.maxAttempts) break
        const provider = await Promise.race([session.queue.take(config.resolveTimeoutMs), aborted])
        if (provider === undefined || provider === ABORTED) break
        start(provider)
        continue
      }
      const canHedge = session.attempts < config.maxAttempts && !session.queue.exhausted
      let hedgeTimer: NodeJS.Timeout | undefined
      const hedge = canHedge
        ? new Promise<typeof HEDGE>((resolve) => {
            hedgeTimer = setTimeout(resolve, hedgeDelay(config), HEDGE)
          })
        : undefined
      const next = await Promise.race([...inflight.keys(), aborted, ...(hedge ? [hedge] : [])])
      clearTimeout(hedgeTimer)
      if (next === ABORTED) break
      if (next === HEDGE) {
        const provider = await session.queue.take(0)
        if (provider !== undefined) start(provider)
        else if (inflight.size > 0) {
          // Nothing to hedge to right now: wait for the answers in flight.
          const settled = await Promise.race([...inflight.keys(), aborted])
          if (settled === ABORTED) break
          const result = settle(config, session, inflight, settled)
          if (result !== undefined) return { value: result, attempts: session.attempts }
        }
        continue
      }
      const result = settle(config, session, inflight, next)
      if (result !== undefined) return { value: result, attempts: session.attempts }
    }
    return { attempts: session.attempts }
  } finally {
    // The race hit its overall cap (a manifest or HEAD request): the peers still asked did not answer in time, and
    // count as failed, so later requests do not wait the whole cap on them again.
    const timedOut =
      session.signal.aborted && (session.signal.reason as Error | undefined)?.name === 'TimeoutError'
    for (const { controller, provider } of inflight.values()) {
      controller.abort()
      if (timedOut) reportFailure(config, session.key, provider, session.signal.reason)
      // A peer cancelled because another answered first (or the client left) is still good for a later resume.
      else session.queue.putBack(provider)
    }
  }
}

function settle<T>(
  config: PeerFetchConfig,
  session: FetchSession,
  inflight: Map<Promise<Outcome<T>>, Attempt>,
  outcome: Outcome<T>
): T | undefined {
  let began = 0
  for (const [promise, entry] of inflight) {
    if (entry.provider !== outcome.provider) continue
    inflight.delete(promise)
    began = entry.began
  }
  if (outcome.ok) return outcome.value
  if (session.signal.aborted) return undefined
  reportFailure(config, session.key, outcome.provider, outcome.error)
  if (outcome.error instanceof PeerBusyError) session.busy++
  if (isFastRefusal(outcome.error, performance.now() - began) && session.freeRefusals < MAX_FREE_REFUSALS) {
    // A stale record (a stopped node: refused; or a node that dropped the content: 404) answered at once: it costs
    // the pull nothing, so it does not use up the attempts a live provider may still need.
    session.freeRefusals++
    session.attempts--
  }
  return undefined
}

/** A refused connection or a 404 that came back within {@link FAST_REFUSAL_MS}. */
function isFastRefusal(error: unknown, elapsedMs: number): boolean {
  if (elapsedMs > FAST_REFUSAL_MS) return false
  const kind = peerFailureKind(error)
  return kind === 'not-held' || kind === 'connection' || kind === 'busy'
}

/** Reports a failed peer and avoids it for a while (not after a 404: the peer is fine, its record was stale). */
export function reportFailure(
  config: PeerFetchConfig,
  key: string,
  provider: Provider,
  error: unknown
): void {
  // A busy peer is fine: passed over for a moment. A 404 says nothing of the peer: its record was stale.
  if (error instanceof PeerBusyError)
    config.avoid.avoid(provider.id, Math.min(BUSY_AVOID_MS, config.failureAvoidMs))
  else if (!(error instanceof NotHeldError)) config.avoid.avoid(provider.id, config.failureAvoidMs)
  config.events.emit('peer-failure', {
    peer: provider.id,
    registryUrl: provider.registryUrl,
    key,
    kind: peerFailureKind(error),
    reason: error instanceof Error ? error.message : String(error)
  })
}

/** The kind of a peer failure, for metrics (a bounded set, where the reason is free text). */
export function peerFailureKind(error: unknown): PeerFailureKind {
  if (error instanceof NotHeldError) return 'not-held'
  if (error instanceof PeerBusyError) return 'busy'
  if (error instanceof DigestMismatchError) return 'digest-mismatch'
  if (error instanceof PeerTooSlowError) return 'slow'
  if (error instanceof PeerAnswerError) return 'bad-answer'
  const { name, code } = (typeof error === 'object' && error !== null ? error : {}) as {
    name?: unknown
    code?: unknown
  }
  if (name === 'TimeoutError' || name === 'AbortError' || /TIMEOUT/.test(String(code))) return 'timeout'
  if (typeof code === 'string' && /^(E[A-Z]+|UND_ERR_SOCKET|UND_ERR_CLOSED)$/.test(code)) return 'connection'
  return 'other'
}

function hedgeDelay(config: PeerFetchConfig): number {
  return Math.max(config.minHedgeDelayMs, config.latency.percentile(config.hedgePercentile) ?? 0)
}

function requestHeaders(config: PeerFetchConfig, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = { [MIRRORED_HEADER]: 'true', ...extra }
  if (config.authorization !== undefined) headers.authorization = config.authorization
  return headers
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

function contentLength(headers: Dispatcher.ResponseData['headers']): number | undefined {
  const value = header(headers, 'content-length')
  if (value === undefined || !/^[0-9]{1,16}$/.test(value)) return undefined
  const length = Number(value)
  return Number.isSafeInteger(length) ? length : undefined
}

async function send(
  config: PeerFetchConfig,
  provider: Provider,
  method: 'GET' | 'HEAD',
  path: string,
  signal: AbortSignal,
  headers: Record<string, string> = {}
): Promise<Dispatcher.ResponseData> {
  const url = new URL(path, `${provider.registryUrl}/`)
  return config.dispatcher.request({
    origin: url.origin,
    path: url.pathname + url.search,
    method,
    headers: requestHeaders(config, headers),
    signal,
    headersTimeout: config.responseTimeoutMs,
    bodyTimeout: config.stallTimeoutMs
  })
}

function refuse(response: Dispatcher.ResponseData, reason: string): never {
  discard(response.body)
  throw new PeerAnswerError(reason)
}

function refuseStatus(response: Dispatcher.ResponseData): never {
  if (response.statusCode === 404) {
    discard(response.body)
    throw new NotHeldError('peer answered 404: it no longer holds the content')
  }
  refuse(response, `peer answered ${response.statusCode}`)
}

/** Drops a peer's body: a small one is read to keep the connection, a large one closes it. Never throws. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {})
  body.dump({ limit: 64 * 1024 }).catch(() => {})
}

/**
 * Fetches a manifest (by tag or digest) from one peer and verifies it: status 200, a manifest media type,
 * at most `maxManifestBytes`, and bytes that hash to the requested digest (or, for a tag, to the digest
 * the peer names in `Docker-Content-Digest`).
 */
export async function fetchManifest(
  config: PeerFetchConfig,
  provider: Provider,
  path: ManifestPath,
  accept: string | undefined,
  signal: AbortSignal
): Promise<PeerManifest> {
  const response = await send(
    config,
    provider,
    'GET',
    formatDistributionPath(path),
    signal,
    accept === undefined ? {} : { accept }
  )
  if (response.statusCode !== 200) refuseStatus(response)
  const named = header(response.headers, 'docker-content-digest')
  let digest: Digest
  try {
    digest = path.digest ?? parseDigest(named ?? '')
  } catch {
    refuse(response, 'peer named no valid Docker-Content-Digest for a tag')
  }
  if (named !== undefined && named !== digest) refuse(response, `peer named digest ${named}, not ${digest}`)
  const length = contentLength(response.headers)
  if (length !== undefined && length > config.maxManifestBytes)
    refuse(response, `manifest of ${length} bytes is too large`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    size += chunk.byteLength
    if (size > config.maxManifestBytes) refuse(response, 'manifest is too large')
    chunks.push(chunk)
  }
  const body = Buffer.concat(chunks)
  if (length !== undefined && length !== size)
    throw new PeerAnswerError(`peer sent ${size} of ${length} bytes`)
  const hasher = createDigester(digestAlgorithm(digest))
  hasher.update(body)
  const actual = hasher.digest()
  if (actual !== digest) throw new DigestMismatchError(digest, actual)
  const mediaType = header(response.headers, 'content-type')?.split(';')[0]?.trim() ?? sniffMediaType(body)
  if (mediaType === undefined || !isManifestOrIndexMediaType(mediaType)) {
    throw new PeerAnswerError(`peer sent media type ${String(mediaType)} for a manifest`)
  }
  return { provider, digest, mediaType, body }
}

function sniffMediaType(body: Buffer): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'))
    if (typeof parsed === 'object' && parsed !== null && 'mediaType' in parsed) {
      const { mediaType } = parsed
      return typeof mediaType === 'string' ? mediaType : undefined
    }
  } catch {}
  return undefined
}

/** A blob answer, from either client: status, a header by lower-case name, the body. */
interface BlobAnswer {
  statusCode: number
  header(name: string): string | undefined
  body: PeerBody
}

/** Sends a blob request with the pooled client when the handler owns its connections, else with the dispatcher. */
async function sendBlob(
  config: PeerFetchConfig,
  provider: Provider,
  method: 'GET' | 'HEAD',
  path: string,
  signal: AbortSignal,
  headers: Record<string, string>
): Promise<BlobAnswer> {
  const url = new URL(path, `${provider.registryUrl}/`)
  if (config.blobClient !== undefined && url.protocol === 'http:') {
    const target = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80) }
    const response = await requestBlob(
      target,
      method,
      url.pathname + url.search,
      requestHeaders(config, headers),
      signal,
      config.blobClient
    )
    return { statusCode: response.statusCode, header: (name) => response.headers[name], body: response.body }
  }
  const response = await send(config, provider, method, path, signal, headers)
  return {
    statusCode: response.statusCode,
    header: (name) => header(response.headers, name),
    body: undiciBody(response.body)
  }
}

function refuseBlob(answer: BlobAnswer, reason: string): never {
  answer.body.discard()
  if (answer.statusCode === 404 && reason === '')
    throw new NotHeldError(
      'peer answered 404: it no longer holds the content',
      namedFetcher(answer.header(FETCHER_HEADER))
    )
  if (answer.statusCode === 429 && reason === '')
    throw new PeerBusyError('peer answered 429: it serves its maximum of uploads')
  throw new PeerAnswerError(reason === '' ? `peer answered ${answer.statusCode}` : reason)
}

/**
 * The fetcher a peer names in {@link FETCHER_HEADER} (`<peer id> <http(s)://host:port>`), or undefined when absent or
 * malformed: only a bare origin is taken, so a peer cannot point the mirror at a path or at credentials.
 */
export function namedFetcher(value: string | undefined): { id: string; registryUrl: string } | undefined {
  const match = /^([A-Za-z0-9]{1,128}) (https?:\/\/[^\s/?#@]{1,300})$/.exec(value ?? '')
  if (match === null) return undefined
  try {
    const url = new URL(match[2] as string)
    if (url.origin !== match[2]) return undefined
    return { id: match[1] as string, registryUrl: url.origin }
  } catch {
    return undefined
  }
}

/** The size a blob answer gives: Content-Length of a 200, the total of a 206's Content-Range for `offset`. */
function answeredSize(answer: BlobAnswer, offset: number): number {
  if (answer.statusCode === 200) {
    const value = answer.header('content-length')
    if (value === undefined || !/^[0-9]{1,16}$/.test(value) || !Number.isSafeInteger(Number(value)))
      refuseBlob(answer, 'peer sent no Content-Length')
    return Number(value)
  }
  if (answer.statusCode === 206 && offset > 0) {
    const range = answer.header('content-range')
    const match = /^bytes ([0-9]+)-([0-9]+)\/([0-9]+)$/.exec(range ?? '')
    const size = Number(match?.[3])
    if (match === null || Number(match[1]) !== offset || Number(match[2]) !== size - 1)
      refuseBlob(answer, `peer answered range ${String(range)} to bytes=${offset}-`)
    return size
  }
  return refuseBlob(answer, '')
}

/** Sends a blob request, records how long the peer took to answer, and refuses an answer naming another digest. */
async function askBlob(
  config: PeerFetchConfig,
  provider: Provider,
  path: BlobPath,
  method: 'GET' | 'HEAD',
  signal: AbortSignal,
  headers: Record<string, string>
): Promise<BlobAnswer> {
  const began = performance.now()
  // Every body asked for here is hashed against the digest on arrival: the peer need not hash it as well.
  const sent = method === 'GET' ? { ...headers, [VERIFYING_HEADER]: 'sha256' } : headers
  const answer = await sendBlob(config, provider, method, formatDistributionPath(path), signal, sent)
  config.rtt?.observe(provider.id, performance.now() - began)
  const named = answer.header('docker-content-digest')
  if (named !== undefined && named !== path.digest) refuseBlob(answer, `peer named digest ${named}`)
  return answer
}

/**
 * Asks one peer for a blob: HEAD for its size, or GET from byte `offset` (a Range request when
 * `offset > 0`, checked against `Content-Range`; a peer answering 200 to it has its first `offset` bytes
 * skipped). `size`, when known from an earlier peer, must match.
 */
export async function openBlob(
  config: PeerFetchConfig,
  provider: Provider,
  path: BlobPath,
  method: 'GET' | 'HEAD',
  offset: number,
  knownSize: number | undefined,
  signal: AbortSignal
): Promise<PeerBlob> {
  const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {}
  const answer = await askBlob(config, provider, path, method, signal, headers)
  const size = answeredSize(answer, offset)
  if (knownSize !== undefined && size !== knownSize)
    refuseBlob(answer, `peer has ${size} bytes, not ${knownSize}`)
  if (method === 'HEAD') {
    answer.body.discard()
    return { provider, size }
  }
  const body = answer.statusCode === 200 && offset > 0 ? skipping(answer.body, offset) : answer.body
  return answer.header(ARRIVING_HEADER) === 'true'
    ? { provider, size, body, arriving: true }
    : { provider, size, body }
}

/** A peer's answer to a piece request: the body from byte `start`. */
export interface PeerPiece extends PeerBlob {
  body: PeerBody
}

/**
 * Asks one peer for bytes `[start, end)` of a blob of `size` bytes (`Range: bytes=start-(end-1)`): a 206 must name
 * a range from `start` covering at least to `end` (its bytes past `end` are the reader's to drop); a 200 of the
 * whole blob (a peer that ignores Range) has its first `start` bytes skipped.
 */
export async function openBlobRange(
  config: PeerFetchConfig,
  provider: Provider,
  path: BlobPath,
  range: { start: number; end: number; size: number },
  signal: AbortSignal
): Promise<PeerPiece> {
  const headers = { range: `bytes=${range.start}-${range.end - 1}` }
  const answer = await askBlob(config, provider, path, 'GET', signal, headers)
  if (answer.statusCode === 200) {
    if (answeredSize(answer, 0) !== range.size) refuseBlob(answer, `peer has another size than ${range.size}`)
    return { provider, size: range.size, body: skipping(answer.body, range.start) }
  }
  if (answer.statusCode !== 206) return refuseBlob(answer, '')
  const match = /^bytes ([0-9]+)-([0-9]+)\/([0-9]+)$/.exec(answer.header('content-range') ?? '')
  if (match === null || Number(match[1]) !== range.start || Number(match[2]) < range.end - 1)
    refuseBlob(answer, `peer answered range ${String(answer.header('content-range'))} to ${headers.range}`)
  if (Number(match[3]) !== range.size) refuseBlob(answer, `peer has ${match[3]} bytes, not ${range.size}`)
  return { provider, size: range.size, body: answer.body }
}
