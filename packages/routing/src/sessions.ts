/**
 * Request streams kept open per peer. A DHT node answers the messages of one stream in order (go- and
 * js-libp2p-kad-dht both do), so requests to a peer can share one stream instead of opening, negotiating and
 * closing a stream each — the larger part of a request's cost. go-libp2p-kad-dht's message sender does the
 * same. A session closes itself when unused for a while (below the answering side's idle timeout: 10 s in
 * js-libp2p-kad-dht) and on any error.
 *
 * A request allocates its message and one promise: no abort signals and no timers of its own. Each session has
 * one idle timer, re-armed in place on every request, and one deadline timer that is armed again only when it
 * fires with requests still waiting; a cluster in one process runs thousands of sessions, and per-request timers
 * that outlive a young-generation collection were most of what the collector copied during lookups.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { DHT_SESSION_IDLE_MS } from './constants.ts'
import { RequestTimeoutError, SessionClosedError } from './errors.ts'
import { FrameChannel } from './frames.ts'
import { decodeMessage, encodeMessage, type KadMessage, MAX_MESSAGE_BYTES } from './kad-message.ts'

/** Opens a stream to a peer on the DHT protocol. */
export type OpenStream = (peer: PeerId, signal: AbortSignal) => Promise<Stream>

interface Waiter {
  resolve(message: KadMessage): void
  reject(error: Error): void
  /** When the answer is due, ms since the epoch. */
  deadline: number
}

class Session {
  private readonly waiters: Waiter[] = []
  private readonly channel: FrameChannel
  private readonly idle: NodeJS.Timeout
  private deadlineTimer: NodeJS.Timeout | undefined
  private deadlineAt = Number.POSITIVE_INFINITY
  private readonly onClose: () => void
  closed = false

  constructor(stream: Stream, idleMs: number, onClose: () => void) {
    this.onClose = onClose
    this.channel = new FrameChannel(stream, MAX_MESSAGE_BYTES, {
      frame: (bytes) => this.onFrame(bytes),
      end: (error) => (error === undefined ? this.close() : this.fail(error))
    })
    this.idle = setTimeout(this.onIdle, idleMs)
    this.idle.unref()
  }

  private readonly onIdle = (): void => {
    if (this.waiters.length === 0) this.close()
    else this.idle.refresh()
  }

  private onFrame(bytes: Uint8Array): void {
    const waiter = this.waiters.shift()
    if (waiter === undefined) {
      this.fail(new Error('the peer sent an answer to no request'))
      return
    }
    let answer: KadMessage
    try {
      answer = decodeMessage(bytes)
    } catch (err) {
      waiter.reject(err as Error)
      this.fail(err as Error)
      return
    }
    waiter.resolve(answer)
  }

  /** Arms the deadline timer for `at` (ms since the epoch) unless it already fires by then. */
  private armDeadline(at: number): void {
    if (this.deadlineTimer !== undefined && this.deadlineAt <= at) return
    clearTimeout(this.deadlineTimer)
    this.deadlineAt = at
    this.deadlineTimer = setTimeout(this.onDeadline, Math.max(0, at - Date.now()))
    this.deadlineTimer.unref()
  }

  /**
   * A deadline passed: the session fails if a request is still waiting after the event loop has read what arrived.
   * On a starved process the timer and the answer can become due in the same turn of the loop; timers run first,
   * and failing at once would drop an answer already received (a hit read as a miss).
   */
  private readonly onDeadline = (): void => {
    this.deadlineTimer = undefined
    this.deadlineAt = Number.POSITIVE_INFINITY
    setImmediate(this.checkDeadlines)
  }

  private readonly checkDeadlines = (): void => {
    if (this.closed) return
    const now = Date.now()
    let next = Number.POSITIVE_INFINITY
    for (const waiter of this.waiters) {
      if (waiter.deadline <= now) {
        this.fail(new RequestTimeoutError('the peer did not answer in time'))
        return
      }
      next = Math.min(next, waiter.deadline)
    }
    if (next !== Number.POSITIVE_INFINITY) this.armDeadline(next)
  }

  /**
   * Sends `message` and resolves its answer. An answer later than `timeoutMs` fails the request with
   * {@link RequestTimeoutError} and closes the session (every later answer on it would be as late).
   */
  request(message: KadMessage, timeoutMs: number): Promise<KadMessage> {
    if (this.closed) return Promise.reject(new SessionClosedError('session closed'))
    this.idle.refresh()
    const deadline = Date.now() + timeoutMs
    const promise = new Promise<KadMessage>((resolve, reject) => {
      this.waiters.push({ resolve, reject, deadline })
    })
    this.armDeadline(deadline)
    try {
      this.channel.send(encodeMessage(message))
    } catch (err) {
      this.fail(err as Error)
    }
    return promise
  }

  /** Whether its stream can still carry a request. */
  get writable(): boolean {
    const { stream } = this.channel
    return stream.status === 'open' && stream.writeStatus === 'writable'
  }

  private end(): void {
    this.closed = true
    clearTimeout(this.idle)
    clearTimeout(this.deadlineTimer)
    this.onClose()
  }

  fail(error: Error): void {
    if (this.closed) return
    this.end()
    for (const waiter of this.waiters.splice(0)) waiter.reject(error)
    this.channel.stream.abort(error)
  }

  close(): void {
    if (this.closed) return
    this.end()
    for (const waiter of this.waiters.splice(0)) waiter.reject(new SessionClosedError('session closed'))
    const stream = this.channel.stream
    stream.close().catch(() => stream.abort(new Error('close failed')))
  }
}

/** Request sessions by peer. */
export class Sessions {
  private readonly sessions = new Map<string, Promise<Session>>()
  private readonly open: OpenStream
  private readonly idleMs: number

  /** `idleMs`: how long an unused session stays open (default {@link DHT_SESSION_IDLE_MS}); keep it below the answering side's idle timeout. */
  constructor(open: OpenStream, idleMs = DHT_SESSION_IDLE_MS) {
    this.open = open
    this.idleMs = idleMs
  }

  private get(peer: PeerId, timeoutMs: number): Promise<Session> {
    const key = peer.toString()
    let session = this.sessions.get(key)
    if (session === undefined) {
      const opening = this.open(peer, AbortSignal.timeout(Math.max(1, timeoutMs))).then(
        (stream) =>
          new Session(stream, this.idleMs, () => {
            if (this.sessions.get(key) === opening) this.sessions.delete(key)
          }),
        (err: unknown) => {
          if (this.sessions.get(key) === opening) this.sessions.delete(key)
          throw err
        }
      )
      session = opening
      this.sessions.set(key, session)
    }
    return session
  }

  /**
   * Sends a request to `peer` on its session (opened when needed) and resolves the answer.
   * @throws {RequestTimeoutError} when no answer came within `timeoutMs` (ms, opening the stream included);
   *   {@link SessionClosedError} or the stream's error when the session ended first.
   */
  async request(peer: PeerId, message: KadMessage, timeoutMs: number): Promise<KadMessage> {
    const deadline = Date.now() + timeoutMs
    let session = await this.get(peer, timeoutMs)
    // A session whose connection closed meanwhile (closed for being over the bound, say) is replaced.
    if (session.closed || !session.writable) {
      session.close()
      session = await this.get(peer, deadline - Date.now())
    }
    return session.request(message, Math.max(1, deadline - Date.now()))
  }

  /** Closes the session of one peer (it left). */
  drop(peer: PeerId): void {
    const session = this.sessions.get(peer.toString())
    this.sessions.delete(peer.toString())
    session?.then((s) => s.close()).catch(() => {})
  }

  /** Closes every session. */
  closeAll(): void {
    for (const session of this.sessions.values()) session.then((s) => s.close()).catch(() => {})
    this.sessions.clear()
  }
}
