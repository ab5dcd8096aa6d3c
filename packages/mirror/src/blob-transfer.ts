/**
 * Receiving a blob from peers: the bytes of the whole blob are hashed as they arrive, from one peer after another
 * (the next resumes at the byte reached when one fails or trickles), and handed to a sink — the client's response
 * (forwarded as they come, the last chunk held back until the digest matches) or a spool file (nothing reaches the
 * client before the whole blob is verified).
 */
import { randomUUID } from 'node:crypto'
import { type FileHandle, open, unlink } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { join } from 'node:path'
import { type BlobPath, type ByteRange, type Digest, digestAlgorithm } from '@kadmirror/oci'
import type { Provider } from '@kadmirror/routing'
import type { ContentReader } from '@kadmirror/store'
import * as defaults from './constants.ts'
import { PeerAnswerError, PeerTooSlowError } from './errors.ts'
import type { HashPool, StreamHasher } from './hash-pool.ts'
import type { PeerBody } from './peer-body.ts'
import { type PeerBlob, type PeerFetchConfig, reportFailure } from './peer-fetch.ts'
import { LandedBytes } from './piece-plan.ts'
import { ProgressMeter } from './progress.ts'
import { drained } from './respond.ts'

/** Where received bytes go. */
export interface BlobSink {
  /**
   * Takes `chunk`, the blob's bytes from `position`, and calls `release` once it no longer needs them (the reader
   * reuses the buffer). Resolves (true) when the sink can take more, false when it cannot ever (its client went
   * away); undefined when it can take more at once.
   */
  write(chunk: Buffer, position: number, release: () => void): Promise<boolean> | undefined
  /** True once nothing more can be delivered (the client went away). */
  readonly gone: boolean
  /** The sink's own failure (a spool file that cannot be written), if any: not the peer's fault. */
  readonly failure?: unknown
}

/** How a transfer ended. */
export type ReceiveResult =
  /** Every byte arrived and the digest matched; `contributors` sent them. */
  | { kind: 'verified'; contributors: Provider[] }
  /** The bytes hash to `actual`, not the digest. */
  | { kind: 'mismatch'; contributors: Provider[]; actual: Digest }
  /** No peer could finish the blob. */
  | { kind: 'unfinished'; position: number }
  /** The sink's client went away. */
  | { kind: 'gone' }

/** What a transfer needs. */
export interface TransferContext {
  fetch: PeerFetchConfig
  hashes: HashPool
  log: { info(object: object, message: string): void }
}

/**
 * Receives the blob at `path` (`size` bytes) into `sink`, starting with `first` (a body from byte 0) and resuming
 * with `resume(offset)` when a peer fails, stalls or trickles.
 */
export async function receiveBlob(
  context: TransferContext,
  path: BlobPath,
  size: number,
  first: PeerBlob,
  resume: (offset: number) => Promise<{ value?: PeerBlob }>,
  sink: BlobSink
): Promise<ReceiveResult> {
  const hasher = context.hashes.create(digestAlgorithm(path.digest))
  let digested = false
  try {
    const contributors: Provider[] = []
    const state = { position: 0 }
    let current: PeerBlob | undefined = first
    while (current !== undefined) {
      const body = current.body as PeerBody
      contributors.push(current.provider)
      try {
        const ended = await readBody(context, body, size, hasher, sink, state)
        if (!ended) {
          body.discard()
          return { kind: 'gone' }
        }
        if (state.position < size)
          throw new PeerAnswerError(`peer ended the body at byte ${state.position} of ${size}`)
        break
      } catch (err) {
        body.discard()
        if (sink.gone) return { kind: 'gone' }
        // The sink broke (a full disk): no peer is to blame, and no other peer would do better.
        if (sink.failure !== undefined) return { kind: 'unfinished', position: state.position }
        reportFailure(context.fetch, path.digest, current.provider, err)
        context.log.info(
          { peer: current.provider.id, digest: path.digest, position: state.position, err },
          'peer failed mid-blob; resuming'
        )
        current = (await resume(state.position)).value
        if (current === undefined) return { kind: 'unfinished', position: state.position }
      }
    }
    digested = true
    const actual = await hasher.digest()
    if (actual !== path.digest) return { kind: 'mismatch', contributors, actual }
    return { kind: 'verified', contributors }
  } finally {
    if (!digested) hasher.abandon()
  }
}

/**
 * Reads one peer's body into the hasher (when given) and the sink, event-driven (one callback per chunk), paused
 * while the sink or the hash worker catches up, and failed when the peer trickles. Resolves true at its end, false
 * when the sink takes no more (its client went away, or it has all it wanted); `state.position` follows the bytes
 * taken. Rejects with the peer's failure (its `position` set).
 */
export function readBody(
  context: Pick<TransferContext, 'fetch'>,
  body: PeerBody,
  size: number,
  hasher: StreamHasher | undefined,
  sink: BlobSink,
  state: { position: number }
): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    let holds = 0
    let settled = false
    const { minPeerBytesPerSecond, progressWindowMs } = context.fetch
    const meter = new ProgressMeter(minPeerBytesPerSecond, progressWindowMs)
    const progress = setInterval(() => {
      if (!meter.tooSlow()) return
      const rate = Math.round(meter.bytesPerSecond)
      fail(new PeerTooSlowError(`peer sent ${rate} B/s, below ${minPeerBytesPerSecond} B/s`))
    }, defaults.PROGRESS_CHECK_INTERVAL_MS)
    const hold = (until: Promise<unknown>): void => {
      if (holds++ === 0) {
        body.pause()
        meter.pause()
      }
      until.then(
        (ok) => {
          if (ok === false) return finish(false)
          if (--holds === 0 && !settled) {
            body.resume()
            meter.resume()
          }
        },
        (err: unknown) => fail(err)
      )
    }
    const finish = (value: boolean): void => {
      if (settled) return
      settled = true
      clearInterval(progress)
      resolve(value)
    }
    const fail = (err: unknown): void => {
      if (settled) return
      settled = true
      clearInterval(progress)
      reject(err)
    }
    body.read({
      chunk(chunk, release) {
        if (settled) return release()
        if (state.position + chunk.byteLength > size) {
          release()
          return fail(new PeerAnswerError('peer sent more bytes than the blob has'))
        }
        meter.add(chunk.byteLength)
        hasher?.update(chunk)
        const written = sink.write(chunk, state.position, release)
        state.position += chunk.byteLength
        if (written !== undefined) {
          // The sink is behind: do not sit on a partial hash batch meanwhile.
          hasher?.flush()
          hold(written)
        }
        const hashed = hasher?.ready()
        if (hashed !== undefined) hold(hashed)
      },
      end: () => finish(true),
      error: (err) => fail(err)
    })
  })
}

/**
 * Forwards the client's `range` of the blob to `res` as it arrives, holding the last chunk back: {@link finish}
 * sends it once the digest matched, so a client never receives a complete wrong body.
 */
export class ForwardingSink implements BlobSink {
  readonly #res: ServerResponse
  readonly #range: ByteRange
  #pending: { bytes: Buffer; release: () => void } | undefined
  /** Bytes of body sent. */
  sent = 0

  constructor(res: ServerResponse, range: ByteRange) {
    this.#res = res
    this.#range = range
  }

  get gone(): boolean {
    return this.#res.destroyed
  }

  write(chunk: Buffer, position: number, release: () => void): Promise<boolean> | undefined {
    const from = Math.max(this.#range.start, position)
    const to = Math.min(this.#range.end + 1, position + chunk.byteLength)
    if (from >= to) {
      release()
      return undefined
    }
    const previous = this.#pending
    this.#pending = { bytes: chunk.subarray(from - position, to - position), release }
    if (previous === undefined) return undefined
    this.sent += previous.bytes.byteLength
    // Node calls a write's callback once the bytes left (or with an error when the response was destroyed).
    const more = this.#res.write(previous.bytes, previous.release)
    return more ? undefined : drained(this.#res)
  }

  /** Sends the held-back chunk and ends the response. */
  finish(): void {
    const pending = this.#pending
    this.#pending = undefined
    if (pending === undefined) return void this.#res.end()
    this.sent += pending.bytes.byteLength
    this.#res.end(pending.bytes, pending.release)
  }

  /** Gives back the held-back chunk unsent (the transfer failed). */
  drop(): void {
    this.#pending?.release()
    this.#pending = undefined
  }
}

/** What a spool is for: a response, or anything that says when its transfer is no longer wanted. */
export interface SpoolOwner {
  readonly destroyed: boolean
}

/**
 * Writes the blob to a file that is unlinked as soon as it is made (nothing is left behind, whatever happens), with
 * at most {@link SPOOL_WRITE_AHEAD_BYTES} queued. Read it back with {@link SpoolSink.stream} once verified.
 */
export class SpoolSink implements BlobSink {
  readonly #handle: FileHandle
  readonly #owner: SpoolOwner
  #queued = 0
  /** Writers waiting for the queue to drain (several when pieces from several peers land in one spool). */
  #waiting: { resolve(ok: boolean): void; reject(err: unknown): void }[] = []
  #failure: unknown
  #writes: Promise<unknown> = Promise.resolve()
  readonly #landed = new LandedBytes()
  /** Readers sharing the file ({@link SpoolSink.share}); the file closes when the last one is done. */
  #readers = 0
  #closing: Promise<void> | undefined
  #lastReaderGone: (() => void) | undefined

  private constructor(handle: FileHandle, owner: SpoolOwner) {
    this.#handle = handle
    this.#owner = owner
  }

  /**
   * A new, already unlinked, spool file in `directory`, for `owner` (the response it is for: the transfer stops once
   * that is destroyed).
   */
  static async create(directory: string, owner: SpoolOwner): Promise<SpoolSink> {
    const file = join(directory, `kadmirror-spool-${randomUUID()}`)
    const handle = await open(file, 'wx+', 0o600)
    await unlink(file).catch(() => {})
    return new SpoolSink(handle, owner)
  }

  get gone(): boolean {
    return this.#owner.destroyed
  }

  get failure(): unknown {
    return this.#failure
  }

  write(chunk: Buffer, position: number, release: () => void): Promise<boolean> | undefined {
    if (this.#failure !== undefined) {
      release()
      return Promise.reject(this.#failure)
    }
    this.#queued += chunk.byteLength
    const written = this.#handle.write(chunk, 0, chunk.byteLength, position).then(
      () => {
        this.#landed.add(position, position + chunk.byteLength)
        release()
        this.#queued -= chunk.byteLength
        if (this.#waiting.length > 0 && this.#queued <= SPOOL_WRITE_AHEAD_BYTES / 2)
          for (const waiting of this.#waiting.splice(0)) waiting.resolve(true)
      },
      (err: unknown) => {
        // The failure first: a release callback can tell a write that landed from one that did not.
        this.#failure = err
        release()
        for (const waiting of this.#waiting.splice(0)) waiting.reject(err)
      }
    )
    this.#writes = Promise.all([this.#writes, written])
    if (this.#queued <= SPOOL_WRITE_AHEAD_BYTES) return undefined
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject })
    })
  }

  /** Resolves once every write landed. @throws the first write's error (a full disk). */
  async flushed(): Promise<void> {
    await this.#writes
    if (this.#failure !== undefined) throw this.#failure
  }

  /** The spooled blob as a reader of `size` bytes (closing it leaves the file open: {@link SpoolSink.close} does). */
  reader(size: number): ContentReader {
    const handle = this.#handle
    return {
      size,
      read: async (target, offset, length, position) =>
        (await handle.read(target, offset, length, position)).bytesRead,
      close: async () => {}
    }
  }

  /** The bytes `range.start`–`range.end` of the spooled blob, as a stream (its end does not close the file). */
  stream(range: ByteRange): NodeJS.ReadableStream {
    return this.#handle.createReadStream({
      start: range.start,
      end: range.end,
      autoClose: false,
      highWaterMark: SPOOL_READ_CHUNK_BYTES
    })
  }

  /** One past the last byte of the written prefix from byte 0. */
  get prefixEnd(): number {
    return this.#landed.prefixEnd
  }

  /**
   * A reader of the file for another party (a relay to peers), which keeps it open until `release` is called;
   * undefined once the spool is closing.
   */
  share():
    | {
        read(target: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>
        release(): void
      }
    | undefined {
    if (this.#closing !== undefined) return undefined
    this.#readers++
    let released = false
    return {
      read: (target, offset, length, position) => this.#handle.read(target, offset, length, position),
      release: () => {
        if (released) return
        released = true
        if (--this.#readers === 0) this.#lastReaderGone?.()
      }
    }
  }

  /** Closes the file (its space is freed: it has no name) once every shared reader is done. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#writes.catch(() => {})
      if (this.#readers > 0) await new Promise<void>((resolve) => (this.#lastReaderGone = resolve))
      await this.#handle.close().catch(() => {})
    })()
    return this.#closing
  }
}

/** Bytes a spool may have queued for writing before the peer is paused. */
const SPOOL_WRITE_AHEAD_BYTES = 2 * 1024 * 1024
/** Chunk size when a spooled blob is sent to the client, in bytes. */
const SPOOL_READ_CHUNK_BYTES = 1024 * 1024
