/**
 * Copying local content to a response with reused buffers: each response cycles through a few 1 MiB buffers
 * from a shared pool, reading the next while the previous ones are being sent. No fresh buffer per chunk, so
 * no garbage collection per chunk (about twice a stream's throughput for large blobs).
 */
import type { ServerResponse } from 'node:http'
import type { ByteRange, Digest } from '@kadmirror/oci'
import type { ContentReader } from '@kadmirror/store'
import { POOL_IDLE_RELEASE_MS } from './constants.ts'
import { ContentTruncatedError, DigestMismatchError } from './errors.ts'
import { FreeBuffers } from './free-buffers.ts'
import type { StreamHasher } from './hash-pool.ts'
import { drained } from './respond.ts'

/** Size of one copy buffer, in bytes. */
export const COPY_BUFFER_BYTES = 1024 * 1024
/** Free buffers kept for later responses; more are left to the garbage collector. */
const FREE_BUFFERS_KEPT = 4
/** Buffers one response uses in turn while the pool is less than half used. */
const BUFFERS_PER_COPY = 4

/**
 * Copy buffers shared by all responses of a handler, within a budget: {@link BufferPool.take} gives none when every
 * buffer the budget allows is in use (the caller then streams with small buffers instead). Free buffers are let go
 * once the pool has been idle for a while ({@link FreeBuffers}).
 */
export class BufferPool {
  readonly #free: FreeBuffers
  readonly #limit: number
  #allocated = 0

  /**
   * @param budgetBytes most bytes of buffers in use and free at once (at least one buffer)
   * @param idleMs free buffers are let go once the pool has been idle this long, in ms (default
   *   {@link POOL_IDLE_RELEASE_MS})
   */
  constructor(budgetBytes: number, idleMs = POOL_IDLE_RELEASE_MS) {
    this.#limit = Math.max(1, Math.floor(budgetBytes / COPY_BUFFER_BYTES))
    this.#free = new FreeBuffers(
      FREE_BUFFERS_KEPT,
      (count) => {
        this.#allocated -= count
      },
      idleMs
    )
  }

  /** Buffers allocated now (in use or free). */
  get allocated(): number {
    return this.#allocated
  }

  /** True while less than half of the budget is in use (free buffers do not count): a response may take several. */
  get roomy(): boolean {
    return this.#allocated - this.#free.size < this.#limit / 2
  }

  /** A buffer, or undefined when the budget is spent. */
  take(): Buffer | undefined {
    const free = this.#free.take()
    if (free !== undefined) return free
    if (this.#allocated >= this.#limit) return undefined
    this.#allocated++
    return Buffer.allocUnsafeSlow(COPY_BUFFER_BYTES)
  }

  /** Gives a buffer back to the free list (beyond a few, it is dropped). */
  give(buffer: Buffer): void {
    if (!this.#free.give(buffer)) this.#allocated--
  }
}

/** Checks the bytes copied against their digest (the whole content is copied). */
export interface CopyVerification {
  hasher: StreamHasher
  digest: Digest
}

/**
 * Sends bytes `range.start`–`range.end` of `reader` as the response body and ends it, with `first` (from `pool`) and
 * more of the pool's buffers while it is roomy (all are given back to it). Resolves the bytes
 * written; stops early (without ending) when the client goes away. With `verify`, every byte is hashed and the last
 * chunk is held back until the digest matches.
 * @throws {ContentTruncatedError} when the content is shorter than the range (it changed underneath).
 * @throws {DigestMismatchError} when the bytes do not hash to `verify.digest` (before the last chunk is sent).
 */
export async function copyRange(
  reader: ContentReader,
  res: ServerResponse,
  range: ByteRange,
  pool: BufferPool,
  first: Buffer,
  verify?: CopyVerification
): Promise<number> {
  const slots: { buffer: Buffer; sent: Promise<void> }[] = [{ buffer: first, sent: Promise.resolve() }]
  let position = range.start
  let written = 0
  let slot = 0
  let digested = false
  try {
    while (position <= range.end) {
      let current = slots[slot]
      const extra = current === undefined && pool.roomy ? pool.take() : undefined
      if (current === undefined && extra !== undefined) {
        current = { buffer: extra, sent: Promise.resolve() }
        slots[slot] = current
      } else {
        // No more buffers for this response (the pool is busy): cycle through the ones it has.
        if (current === undefined) slot = 0
        current = slots[slot] as { buffer: Buffer; sent: Promise<void> }
        await current.sent
      }
      const length = Math.min(COPY_BUFFER_BYTES, range.end + 1 - position)
      const read = await reader.read(current.buffer, 0, length, position)
      if (read === 0)
        throw new ContentTruncatedError(`content ended at byte ${position}, before ${range.end + 1}`)
      position += read
      const chunk = current.buffer.subarray(0, read)
      if (verify !== undefined) {
        verify.hasher.update(chunk)
        await verify.hasher.ready()
        if (position > range.end) {
          digested = true
          const actual = await verify.hasher.digest()
          if (actual !== verify.digest) throw new DigestMismatchError(verify.digest, actual)
        }
      }
      // The callback runs once the bytes are handed to the socket (or with an error when it closed).
      current.sent = new Promise<void>((resolve) => res.write(chunk, () => resolve()))
      written += read
      if (res.writableNeedDrain) {
        verify?.hasher.flush()
        if (!(await drained(res))) return written
      }
      slot = (slot + 1) % BUFFERS_PER_COPY
      if (res.destroyed) return written
    }
    res.end()
    return written
  } finally {
    if (verify !== undefined && !digested) verify.hasher.abandon()
    void Promise.all(slots.map((s) => s.sent)).then(() => {
      for (const s of slots) pool.give(s.buffer)
    })
  }
}
