/**
 * The blob data path's HTTP/1.1 client: one plain TCP connection per request (`Connection: close`), the response
 * head parsed here, the body read by the kernel straight into a few reused buffers (`net` `onread`) and handed to
 * the reader without a copy. undici reads every body byte through its WASM parser (a copy in, a fresh buffer out,
 * for each chunk): twice the CPU per byte of a large blob, most of a peer hop's cost (bench/compare). Manifests and
 * everything else still go through undici; so do blobs when the handler is given a dispatcher of its own.
 *
 * Every wait is bounded: connecting (`connectTimeoutMs`), the head (`headersTimeoutMs`), and silence while the body
 * flows (`stallTimeoutMs`); the signal aborts at any point. A head over `maxHeaderBytes`, a chunked or length-less
 * body where one is expected, or a body cut short are peer answer errors.
 */
import { connect, type Socket } from 'node:net'
import { PeerAnswerError } from './errors.ts'
import { FreeBuffers } from './free-buffers.ts'
import type { BodyHandlers, PeerBody } from './peer-body.ts'

/** Size of one read buffer, in bytes. */
export const READ_BUFFER_BYTES = 256 * 1024
/** Read buffers one body cycles through: the kernel fills one while the reader holds the others. */
const READ_BUFFERS_PER_BODY = 4
/** Free read buffers kept for later bodies (two bodies' worth: more only held memory after a burst, bench/compare). */
const FREE_READ_BUFFERS_KEPT = 8

const free = new FreeBuffers(FREE_READ_BUFFERS_KEPT)
const takeBuffer = (): Buffer => free.take() ?? Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)
const giveBuffer = (buffer: Buffer): void => {
  free.give(buffer)
}

/** Limits of one request. */
export interface BlobClientOptions {
  connectTimeoutMs: number
  headersTimeoutMs: number
  stallTimeoutMs: number
  maxHeaderBytes: number
}

/** A response head and its body. */
export interface BlobResponse {
  statusCode: number
  /** Header values by lower-case name (the first of repeated ones). */
  headers: Record<string, string>
  body: PeerBody
}

/** A timeout of this client: `name` TimeoutError, as an aborted timer signal. */
class BlobClientTimeoutError extends Error {
  override readonly name = 'TimeoutError'
}

/** Parses a response head (status line and header lines, without the final empty line). */
export function parseResponseHead(head: string): { statusCode: number; headers: Record<string, string> } {
  const lines = head.split('\r\n')
  const status = /^HTTP\/1\.[01] ([1-5][0-9]{2})(?: .*)?$/.exec(lines[0] ?? '')
  if (status === null) throw new PeerAnswerError('peer sent no valid HTTP status line')
  // No prototype: a header named `constructor` or `__proto__` is only a header.
  const headers = Object.create(null) as Record<string, string>
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(line.slice(0, colon)))
      throw new PeerAnswerError('peer sent a malformed header line')
    const name = line.slice(0, colon).toLowerCase()
    const value = line.slice(colon + 1).trim()
    if (name === 'content-length' && headers[name] !== undefined && headers[name] !== value)
      throw new PeerAnswerError('peer sent two different Content-Length headers')
    headers[name] ??= value
  }
  return { statusCode: Number(status[1]), headers }
}

/** The body length a response head announces, or undefined when the response has no body (HEAD, 204, 304). */
function bodyLength(method: string, statusCode: number, headers: Record<string, string>): number | undefined {
  if (method === 'HEAD' || statusCode === 204 || statusCode === 304) return undefined
  // An error answer is judged by its status alone; its body is never read (the connection closes).
  if (statusCode < 200 || statusCode > 299) return undefined
  if (headers['transfer-encoding'] !== undefined) throw new PeerAnswerError('peer sent a chunked body')
  const value = headers['content-length']
  if (value === undefined || !/^[0-9]{1,16}$/.test(value))
    throw new PeerAnswerError('peer sent no Content-Length')
  return Number(value)
}

/** Sends `method` for `path` to `host:port` and resolves the response once its head arrived. */
export function requestBlob(
  target: { host: string; port: number },
  method: 'GET' | 'HEAD',
  path: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  options: BlobClientOptions
): Promise<BlobResponse> {
  return new Promise<BlobResponse>((resolve, reject) => {
    const connection = new BodyConnection(target, method, options, signal, resolve, reject)
    connection.send(path, headers)
  })
}

/** One request's connection: the head, then the body into reused buffers. */
class BodyConnection implements PeerBody {
  readonly #socket: Socket
  readonly #target: string
  readonly #method: string
  readonly #options: BlobClientOptions
  readonly #signal: AbortSignal
  #resolve: ((response: BlobResponse) => void) | undefined
  #reject: ((err: unknown) => void) | undefined
  /** Free read buffers; the one the kernel fills next is `#armed`, the reader holds the others. */
  readonly #spare: Buffer[] = []
  #armed: Buffer | undefined
  #head = ''
  #remaining = -1
  #handlers: BodyHandlers | undefined
  readonly #early: { bytes: Buffer; release: () => void }[] = []
  #pausedByReader = false
  #pausedForBuffers = false
  #timer: NodeJS.Timeout | undefined
  #done = false
  /** Why the body failed before the reader attached, to tell it then. */
  #failure: unknown

  constructor(
    target: { host: string; port: number },
    method: string,
    options: BlobClientOptions,
    signal: AbortSignal,
    resolve: (response: BlobResponse) => void,
    reject: (err: unknown) => void
  ) {
    this.#target = target.host.includes(':')
      ? `[${target.host}]:${target.port}`
      : `${target.host}:${target.port}`
    this.#method = method
    this.#options = options
    this.#signal = signal
    this.#resolve = resolve
    this.#reject = reject
    for (let i = 0; i < READ_BUFFERS_PER_BODY; i++) this.#spare.push(takeBuffer())
    this.#socket = connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      onread: { buffer: () => this.#arm(), callback: (n: number) => this.#onRead(n) }
    })
    this.#socket.on('error', (err) => this.#fail(err))
    this.#socket.on('close', () => this.#fail(new PeerAnswerError('peer closed the connection early')))
    this.#startTimer(options.connectTimeoutMs, 'connecting to the peer timed out')
    this.#socket.once('connect', () =>
      this.#startTimer(options.headersTimeoutMs, 'the peer sent no answer in time')
    )
    if (signal.aborted) queueMicrotask(() => this.#fail(signal.reason))
    else signal.addEventListener('abort', this.#onAbort, { once: true })
  }

  #onAbort = (): void => this.#fail(this.#signal.reason)

  send(path: string, headers: Record<string, string>): void {
    const lines = [`${this.#method} ${path} HTTP/1.1`, `host: ${this.#target}`, 'connection: close']
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
    this.#socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  }

  /** The buffer the next read goes into (node asks after every read, paused or not). */
  #arm(): Buffer {
    // Reads pause while one free buffer is left, so one is always here; the fallback only guards the invariant.
    this.#armed = this.#spare.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)
    return this.#armed
  }

  #startTimer(ms: number, message: string): void {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.#fail(new BlobClientTimeoutError(message)), ms)
  }

  /** `n` bytes were read into the armed buffer. Returns false to pause the socket. */
  #onRead(n: number): boolean {
    const buffer = this.#armed as Buffer
    this.#armed = undefined
    if (this.#done) return this.#recycle(buffer, false)
    let bytes = buffer.subarray(0, n)
    if (this.#remaining < 0) {
      const body = this.#readHead(bytes)
      if (body === undefined || this.#done) return this.#recycle(buffer, !this.#done)
      bytes = body
    }
    if (bytes.byteLength > this.#remaining) {
      this.#fail(new PeerAnswerError('peer sent more bytes than its Content-Length'))
      return this.#recycle(buffer, false)
    }
    if (bytes.byteLength === 0) return this.#recycle(buffer, this.#flowing())
    this.#remaining -= bytes.byteLength
    let released = false
    this.#deliver(bytes, () => {
      if (released) return
      released = true
      this.#release(buffer)
    })
    if (this.#remaining === 0) this.#finish()
    else this.#startTimer(this.#options.stallTimeoutMs, 'the peer stopped sending the body')
    return this.#flowing()
  }

  /** Whether reading goes on: not while the reader paused, nor with only the next read's buffer left. */
  #flowing(): boolean {
    if (this.#done) return false
    if (this.#spare.length <= 1) this.#pausedForBuffers = true
    const flowing = !this.#pausedForBuffers && !this.#pausedByReader
    if (!flowing) clearTimeout(this.#timer)
    return flowing
  }

  #recycle(buffer: Buffer, flowing: boolean): boolean {
    this.#release(buffer)
    return flowing
  }

  #release(buffer: Buffer): void {
    if (this.#done) {
      giveBuffer(buffer)
      return
    }
    this.#spare.push(buffer)
    if (this.#pausedForBuffers && this.#spare.length > 1) {
      this.#pausedForBuffers = false
      if (!this.#pausedByReader) this.#resumeSocket()
    }
  }

  #resumeSocket(): void {
    this.#startTimer(this.#options.stallTimeoutMs, 'the peer stopped sending the body')
    this.#socket.resume()
  }

  #deliver(bytes: Buffer, release: () => void): void {
    if (this.#handlers === undefined) this.#early.push({ bytes, release })
    else this.#handlers.chunk(bytes, release)
  }

  /** Gathers the head; resolves the response once it is complete. Returns the body bytes after it, if any. */
  #readHead(bytes: Buffer): Buffer | undefined {
    const before = this.#head.length
    this.#head += bytes.toString('latin1')
    const end = this.#head.indexOf('\r\n\r\n')
    if ((end < 0 ? this.#head.length : end) > this.#options.maxHeaderBytes) {
      this.#fail(new PeerAnswerError('peer sent a head too large'))
      return undefined
    }
    if (end < 0) return undefined
    try {
      const { statusCode, headers } = parseResponseHead(this.#head.slice(0, end))
      this.#remaining = bodyLength(this.#method, statusCode, headers) ?? 0
      const resolve = this.#resolve
      this.#resolve = undefined
      this.#reject = undefined
      // The reader attaches its handlers once it has looked at the head: hold the body until it does.
      this.#pausedByReader = true
      resolve?.({ statusCode, headers, body: this })
      if (this.#remaining === 0) this.#finish()
      return bytes.subarray(end + 4 - before)
    } catch (err) {
      this.#fail(err)
      return undefined
    }
  }

  /** Stops the connection and hands the free buffers back; held ones go back as they are released. */
  #close(): void {
    this.#done = true
    clearTimeout(this.#timer)
    this.#signal.removeEventListener('abort', this.#onAbort)
    this.#socket.destroy()
    for (const buffer of this.#spare.splice(0)) giveBuffer(buffer)
    if (this.#armed !== undefined) giveBuffer(this.#armed)
    this.#armed = undefined
  }

  #finish(): void {
    if (this.#done) return
    this.#close()
    if (this.#early.length === 0) this.#handlers?.end()
  }

  #fail(err: unknown): void {
    if (this.#done) return
    this.#close()
    if (this.#reject !== undefined) this.#reject(err)
    else if (this.#handlers !== undefined) this.#handlers.error(err)
    else this.#failure = err
    this.#handlers = undefined
    this.#reject = undefined
    this.#resolve = undefined
  }

  read(handlers: BodyHandlers): void {
    this.#handlers = handlers
    for (const { bytes, release } of this.#early.splice(0)) handlers.chunk(bytes, release)
    if (this.#done) {
      if (this.#failure !== undefined) handlers.error(this.#failure)
      else if (this.#remaining === 0) handlers.end()
      return
    }
    this.resume()
  }

  pause(): void {
    this.#pausedByReader = true
    clearTimeout(this.#timer)
    this.#socket.pause()
  }

  resume(): void {
    this.#pausedByReader = false
    if (!this.#pausedForBuffers && !this.#done) this.#resumeSocket()
  }

  discard(): void {
    this.#handlers = { chunk: (_bytes, release) => release(), end: () => {}, error: () => {} }
    for (const { release } of this.#early.splice(0)) release()
    if (!this.#done) this.#close()
  }
}
