/**
 * Copying local content to a response with reused buffers: each response cycles through a few 1 MiB buffers
 * from a shared pool, reading the next while the previous ones are being sent. No fresh buffer per chunk, so
 * no garbage collection per chunk (about twice a stream's throughput for large blobs).
 */
import type { ServerResponse } from 'node:http'
import type { ByteRange } from '@kadmirror/oci'
import type { ContentReader } from '@kadmirror/store'
import { ContentTruncatedError } from './errors.ts'
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

/**
 * Sends bytes `range.start`–`range.end` of `reader` as the response body and ends it. Resolves the bytes
 * written; stops early (without ending) when the client goes away.
 * @throws when the content is shorter than the range (it changed underneath).
 */
export async function copyRange(
  reader: ContentReader,
  res: ServerResponse,
  range: ByteRange,
  pool: BufferPool
): Promise<number> {
  const slots: { buffer: Buffer; sent: Promise<void> }[] = []
  let position = range.start
  let written = 0
  let slot = 0
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
      // The callback runs once the bytes are handed to the socket (or with an error when it closed).
      current.sent = new Promise<void>((resolve) => res.write(chunk, () => resolve()))
      written += read
      if (res.writableNeedDrain && !(await drained(res))) return written
      slot = (slot + 1) % BUFFERS_PER_COPY
    }
    res.end()
    return written
  } finally {
    void Promise.all(slots.map((s) => s.sent)).then(() => {
      for (const s of slots) pool.give(s.buffer)
    })
  }
}
