/**
 * Request streams kept open per peer. A DHT node answers the messages of one stream in order (go- and
 * js-libp2p-kad-dht both do), so requests to a peer can share one stream instead of opening, negotiating and
 * closing a stream each — the larger part of a request's cost. go-libp2p-kad-dht's message sender does the
 * same. A session closes itself before the peer's idle timeout (10 s in js-libp2p-kad-dht) and on any error.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { pbStream } from '@libp2p/utils'
import { type KadMessage, KadMessageCodec } from './kad-message.ts'

/** How long an unused session stays open, in ms; below the 10 s a kad-dht server waits for the next message. */
export const SESSION_IDLE_MS = 5_000

/** Opens a stream to a peer on the DHT protocol. */
export type OpenStream = (peer: PeerId, signal: AbortSignal) => Promise<Stream>

interface Waiter {
  resolve(message: KadMessage): void
  reject(error: Error): void
  /** The caller gave up (not a timeout): its answer is read and dropped, and the session lives on. */
  abandoned: boolean
}

class Session {
  private readonly waiters: Waiter[] = []
  private readonly messages: ReturnType<ReturnType<typeof pbStream>['pb']>
  private idle: NodeJS.Timeout | undefined
  closed = false
  private readonly stream: Stream
  private readonly onClose: () => void
  private readonly idleMs: number

  constructor(stream: Stream, idleMs: number, onClose: () => void) {
    this.stream = stream
    this.idleMs = idleMs
    this.onClose = onClose
    this.messages = pbStream(stream).pb(KadMessageCodec)
    this.readLoop().catch(() => {})
    this.touch()
  }

  private touch(): void {
    clearTimeout(this.idle)
    this.idle = setTimeout(() => {
      if (this.waiters.length === 0) this.close()
      else this.touch()
    }, this.idleMs)
    this.idle.unref()
  }

  private async readLoop(): Promise<void> {
    try {
      while (!this.closed) {
        const answer = (await this.messages.read()) as KadMessage
        const waiter = this.waiters.shift()
        if (waiter !== undefined && !waiter.abandoned) waiter.resolve(answer)
      }
    } catch (err) {
      this.fail(err as Error)
    }
  }

  /**
   * Sends `message` and resolves its answer. A timeout (`signal` aborted with a TimeoutError) or any stream
   * failure closes the session; another abort only drops this request's answer.
   */
  async request(message: KadMessage, signal: AbortSignal): Promise<KadMessage> {
    this.touch()
    let waiter: Waiter | undefined
    const answer = new Promise<KadMessage>((resolve, reject) => {
      waiter = { resolve, reject, abandoned: false }
      this.waiters.push(waiter)
    })
    // The answer may be rejected while the request is still writing; it is awaited below.
    answer.catch(() => {})
    const onAbort = (): void => {
      const reason = signal.reason instanceof Error ? signal.reason : new Error('request aborted')
      if (reason.name === 'TimeoutError') {
        this.fail(reason)
        return
      }
      if (waiter === undefined) return
      waiter.abandoned = true
      waiter.reject(reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await this.messages.write(message, { signal })
      return await answer
    } catch (err) {
      this.fail(err as Error)
      throw err
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  fail(error: Error): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.idle)
    this.onClose()
    for (const waiter of this.waiters.splice(0)) waiter.reject(error)
    this.stream.abort(error)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.idle)
    this.onClose()
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error('session closed'))
    this.stream.close().catch(() => this.stream.abort(new Error('close failed')))
  }
}

/** Request sessions by peer. */
export class Sessions {
  private readonly sessions = new Map<string, Promise<Session>>()
  private readonly open: OpenStream
  private readonly idleMs: number

  /** `idleMs`: how long an unused session stays open (default {@link SESSION_IDLE_MS}); keep it below the answering side's idle timeout. */
  constructor(open: OpenStream, idleMs = SESSION_IDLE_MS) {
    this.open = open
    this.idleMs = idleMs
  }

  private get(peer: PeerId, signal: AbortSignal): Promise<Session> {
    const key = peer.toString()
    let session = this.sessions.get(key)
    if (session === undefined) {
      session = this.open(peer, signal).then(
        (stream) => new Session(stream, this.idleMs, () => this.sessions.delete(key)),
        (err: unknown) => {
          this.sessions.delete(key)
          throw err
        }
      )
      this.sessions.set(key, session)
    }
    return session
  }

  /** Sends a request to `peer` on its session (opened when needed) and resolves the answer. */
  async request(peer: PeerId, message: KadMessage, signal: AbortSignal): Promise<KadMessage> {
    const session = await this.get(peer, signal)
    if (session.closed) return (await this.get(peer, signal)).request(message, signal)
    return session.request(message, signal)
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
