/**
 * Free buffers kept for reuse by the data path's pools, dropped once the pool has been idle: after a burst of
 * transfers the buffers kept for the next one would otherwise stay in the process's memory until it ends (a node
 * under a memory budget idles most of the time).
 */
import { POOL_IDLE_RELEASE_MS } from './constants.ts'

/** A free list of at most `keep` buffers, emptied when no buffer was taken or given back for `idleMs`. */
export class FreeBuffers {
  readonly #list: Buffer[] = []
  readonly #keep: number
  readonly #idleMs: number
  readonly #onDrop: (count: number) => void
  #timer: NodeJS.Timeout | undefined

  /**
   * @param keep most buffers kept
   * @param onDrop called with how many buffers were dropped when the list empties itself (default: nothing)
   * @param idleMs idle time after which the list empties itself, in ms (default {@link POOL_IDLE_RELEASE_MS})
   */
  constructor(keep: number, onDrop: (count: number) => void = () => {}, idleMs = POOL_IDLE_RELEASE_MS) {
    this.#keep = keep
    this.#onDrop = onDrop
    this.#idleMs = idleMs
  }

  /** Buffers held now. */
  get size(): number {
    return this.#list.length
  }

  /** A kept buffer, or undefined when none is. */
  take(): Buffer | undefined {
    this.#touch()
    return this.#list.pop()
  }

  /** Keeps `buffer` for reuse; false when the list is full (the caller lets it go). */
  give(buffer: Buffer): boolean {
    this.#touch()
    if (this.#list.length >= this.#keep) return false
    this.#list.push(buffer)
    return true
  }

  /** Drops every kept buffer now. */
  release(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const count = this.#list.length
    if (count === 0) return
    this.#list.length = 0
    this.#onDrop(count)
  }

  #touch(): void {
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.release(), this.#idleMs)
      this.#timer.unref()
    } else this.#timer.refresh()
  }
}
