/**
 * Hashes a blob that lands in a spool file out of order (pieces from several peers): whenever the written prefix
 * from byte 0 grows, the new bytes are read back from the file (the page cache, in practice) through one reused
 * buffer and hashed in order, while the rest is still arriving.
 */
import type { Digest } from '@kadmirror/oci'
import type { ContentReader } from '@kadmirror/store'
import type { StreamHasher } from './hash-pool.ts'
import type { LandedBytes } from './piece-plan.ts'

/** Bytes read back per step, in bytes (the one buffer a transfer's hashing holds). */
export const SPOOL_HASH_READ_BYTES = 1024 * 1024

/** The running hash of a spool's landed prefix. */
export class SpoolHashing {
  readonly #hasher: StreamHasher
  readonly #reader: ContentReader
  readonly #landed: LandedBytes
  readonly #buffer = Buffer.allocUnsafeSlow(SPOOL_HASH_READ_BYTES)
  #hashed = 0
  #pumping: Promise<void> | undefined
  #failure: unknown

  constructor(hasher: StreamHasher, reader: ContentReader, landed: LandedBytes) {
    this.#hasher = hasher
    this.#reader = reader
    this.#landed = landed
  }

  /** Bytes hashed so far (the verified prefix grows from here once the digest matches). */
  get hashed(): number {
    return this.#hashed
  }

  /** Hashes what has landed since the last call (in the background). */
  kick(): void {
    if (this.#pumping !== undefined || this.#failure !== undefined) return
    if (this.#hashed >= this.#landed.prefixEnd) return
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined
      this.kick()
    })
  }

  async #pump(): Promise<void> {
    try {
      while (this.#hashed < this.#landed.prefixEnd) {
        const want = Math.min(this.#buffer.byteLength, this.#landed.prefixEnd - this.#hashed)
        const got = await this.#reader.read(this.#buffer, 0, want, this.#hashed)
        if (got <= 0) throw new Error(`the spool ended at byte ${this.#hashed}`)
        this.#hasher.update(this.#buffer.subarray(0, got))
        this.#hashed += got
        await this.#hasher.ready()
      }
    } catch (err) {
      this.#failure = err
    }
  }

  /**
   * The digest of the blob once all `size` bytes landed and were hashed.
   * @throws the read failure, or when the landed prefix stops short of `size`.
   */
  async digest(size: number): Promise<Digest> {
    for (;;) {
      this.kick()
      if (this.#pumping !== undefined) await this.#pumping
      if (this.#failure !== undefined) throw this.#failure
      if (this.#hashed >= size) return this.#hasher.digest()
      if (this.#landed.prefixEnd <= this.#hashed)
        throw new Error(`only ${this.#hashed} of ${size} bytes landed`)
    }
  }

  /** Forgets the hash (the transfer was abandoned). */
  abandon(): void {
    this.#hasher.abandon()
  }
}
