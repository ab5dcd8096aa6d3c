/**
 * Copying local content to a response with reused buffers: each response cycles through a few 1 MiB buffers
 * from a shared pool, reading the next while the previous ones are being sent. No fresh buffer per chunk, so
 * no garbage collection per chunk (about twice a stream's throughput for large blobs).
 */
import type { ServerResponse } from 'node:http'
import type { ByteRange, Digest } from '@kadmirror/oci'
import type { ContentReader } from '@kadmirror/store'
import { ContentTruncatedError, DigestMismatchError } from './errors.ts'
import type { StreamHasher } from './hash-pool.ts'
import { drained } from './respond.ts'

/** Size of one copy buffer, in bytes. */
export const COPY_BUFFER_BYTES = 1024 * 1024
/** Buffers one response uses in turn. */
const BUFFERS_PER_COPY = 4
/** Free buffers the pool keeps for later responses. */
const POOL_LIMIT = 32

/** Free copy buffers shared by all responses of a handler. */
export class BufferPool {
  readonly #free: Buffer[] = []

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(COPY_BUFFER_BYTES)
  }

  give(buffer: Buffer): void {
    if (this.#free.length < POOL_LIMIT) this.#free.push(buffer)
  }
}

/** Checks the bytes copied against their digest (the whole content is copied). */
export interface CopyVerification {
  hasher: StreamHasher
  digest: Digest
}

/**
 * Sends bytes `range.start`–`range.end` of `reader` as the response body and ends it. Resolves the bytes
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
  verify?: CopyVerification
): Promise<number> {
  const slots: { buffer: Buffer; sent: Promise<void> }[] = []
  let position = range.start
  let written = 0
  let slot = 0
  let digested = false
  try {
    while (position <= range.end) {
      let current = slots[slot]
      if (current === undefined) {
        current = { buffer: pool.take(), sent: Promise.resolve() }
        slots[slot] = current
      } else await current.sent
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
      if (res.writableNeedDrain && !(await drained(res))) return written
      slot = (slot + 1) % BUFFERS_PER_COPY
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
