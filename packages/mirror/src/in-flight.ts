/**
 * Content this node is still receiving — containerd downloading a blob from upstream after the mirror answered 404 —
 * served to peers while it grows: a read that reaches the written end waits for more, until the whole size is sent.
 * The file may be renamed underneath (containerd's commit keeps the inode): an open descriptor reads on.
 */
import { type FileHandle, open } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ByteRange, Digest } from '@kadmirror/oci'
import { drained } from './respond.ts'

/** A file being written that will hold `size` bytes of a blob. */
export interface GrowingContent {
  /** The file's path (containerd's `ingest/<id>/data`). */
  path: string
  /** The blob's size in bytes, once complete. */
  size: number
}

/**
 * Where the mirror finds content this node is still receiving, to serve it to peers before it is complete. The
 * peers verify the digest as the bytes arrive, as for any peer content.
 */
export interface InFlightContent {
  /** The content being written for `digest` now, or undefined. */
  find(digest: Digest): Promise<GrowingContent | undefined>
}

/** Limits of {@link sendGrowing}, in ms, and how it learns what was written. */
export interface GrowingLimits {
  /** Give up when the file has not grown for this long. */
  stallMs: number
  /** How often a read at the written end looks again. */
  pollMs: number
  /**
   * One past the last byte written in order from byte 0 (a spool whose pieces land out of order has holes past it);
   * default: the file's end (a read returning 0 bytes is the written end).
   */
  writtenEnd?: () => number
  /** True once the content will never be complete (its transfer failed): the response is cut. */
  abandoned?: () => boolean
}

/** What {@link sendGrowing} reads: an open file, or a spool shared by a relay. */
export interface GrowingReader {
  read(target: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>
}

/** Largest read of growing content, in bytes. */
const READ_BYTES = 256 * 1024
/** Read buffers per copy of growing content (one being read into while the others are sent). */
const READ_BUFFERS = 3

/** The growing content did not grow for the stall time: its download stopped. */
export class GrowingStalledError extends Error {
  /** The byte reached: the next one to send. */
  readonly position: number

  constructor(position: number) {
    super(`the content stopped growing at byte ${position}`)
    this.name = 'GrowingStalledError'
    this.position = position
  }
}

/** Opens growing content for reading; undefined when the file is gone (committed or removed meanwhile: look again). */
export async function openGrowing(content: GrowingContent): Promise<FileHandle | undefined> {
  return open(content.path, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
}

/**
 * Writes bytes `range` of `file` (opened by {@link openGrowing}, or a shared spool; the caller closes it) to `res` as
 * they are written, and ends the response. Resolves the bytes sent; stops early (without ending) when the client
 * goes away.
 * @throws {GrowingStalledError} when the file stops growing for `limits.stallMs`, or is abandoned.
 */
export async function sendGrowing(
  res: ServerResponse,
  file: GrowingReader,
  range: ByteRange,
  limits: GrowingLimits
): Promise<number> {
  const sent = await copyGrowing(res, file, range, limits)
  if (sent === range.end + 1 - range.start) res.end()
  return sent
}

/**
 * Writes bytes `range` of `file` to `res` as they are written, without ending the response. Resolves the bytes
 * sent: fewer than the range when the client went away. Reads into three buffers of up to 256 KiB, reused.
 * @throws {GrowingStalledError} when the file stops growing for `limits.stallMs`, or is abandoned.
 */
export async function copyGrowing(
  res: ServerResponse,
  file: GrowingReader,
  range: ByteRange,
  limits: GrowingLimits,
  /** Called once, before the first byte is written (to send the headers only then). */
  begin?: () => void
): Promise<number> {
  const buffers = new ReadBuffers(Math.min(READ_BYTES, range.end + 1 - range.start), res)
  let position = range.start
  let grewAt = performance.now()
  while (position <= range.end && !res.destroyed) {
    if (limits.abandoned?.() === true) throw new GrowingStalledError(position)
    const written = limits.writtenEnd?.() ?? Number.POSITIVE_INFINITY
    const want = Math.min(READ_BYTES, range.end + 1 - position, Math.max(0, written - position))
    const buffer = want === 0 ? undefined : await buffers.take()
    if (buffer === undefined && want > 0) break // the client went away while every buffer was queued to it
    const bytesRead = buffer === undefined ? 0 : (await file.read(buffer, 0, want, position)).bytesRead
    if (bytesRead === 0) {
      if (buffer !== undefined) buffers.give(buffer)
      if (performance.now() - grewAt > limits.stallMs) throw new GrowingStalledError(position)
      await sleep(limits.pollMs)
      continue
    }
    grewAt = performance.now()
    position += bytesRead
    begin?.()
    begin = undefined
    const more = res.write((buffer as Buffer).subarray(0, bytesRead), () => buffers.give(buffer as Buffer))
    if (!more && !(await drained(res))) break
  }
  return position - range.start
}

/**
 * The read buffers of one copy of growing content: {@link READ_BUFFERS} of `bytes` each, a buffer back once the
 * response has sent what was written from it (no fresh buffer per read).
 */
class ReadBuffers {
  readonly #free: Buffer[] = []
  readonly #res: ServerResponse
  #waiting: ((buffer: Buffer | undefined) => void) | undefined

  constructor(bytes: number, res: ServerResponse) {
    for (let i = 0; i < READ_BUFFERS; i++) this.#free.push(Buffer.allocUnsafe(bytes))
    this.#res = res
  }

  /** A free buffer, waiting for one while all are queued to the response; undefined once the response closed. */
  take(): Promise<Buffer | undefined> {
    const buffer = this.#free.pop()
    if (buffer !== undefined || this.#res.destroyed) return Promise.resolve(buffer)
    return new Promise((resolve) => {
      const onClose = (): void => {
        this.#waiting = undefined
        resolve(undefined)
      }
      this.#res.once('close', onClose)
      this.#waiting = (given) => {
        this.#res.off('close', onClose)
        resolve(given)
      }
    })
  }

  /** Returns `buffer` (its bytes were sent, or the response failed). */
  give(buffer: Buffer): void {
    const waiting = this.#waiting
    this.#waiting = undefined
    if (waiting !== undefined) waiting(buffer)
    else this.#free.push(buffer)
  }
}
