/**
 * The progress bound of a blob transfer from a peer: a peer must keep up a least throughput, measured over windows
 * of the time the mirror was actually reading from it (time paused because the client or the hash worker is behind
 * does not count against the peer). A trickling peer is left for the next one, at the byte reached.
 */

/** Measures one peer body's throughput; {@link ProgressMeter.tooSlow} says when it fell below the bound. */
export class ProgressMeter {
  readonly #minBytesPerSecond: number
  readonly #windowMs: number
  readonly #now: () => number
  /** Reading time counted in the current window, in ms (up to the last pause or check). */
  #activeMs = 0
  #bytes = 0
  /** When reading last (re)started, or undefined while paused. */
  #since: number | undefined

  /**
   * @param minBytesPerSecond least throughput, in bytes per second (0: no bound)
   * @param windowMs reading time a judgement covers, in ms
   * @param now clock in ms (for tests)
   */
  constructor(
    minBytesPerSecond: number,
    windowMs: number,
    now: () => number = performance.now.bind(performance)
  ) {
    this.#minBytesPerSecond = minBytesPerSecond
    this.#windowMs = windowMs
    this.#now = now
    this.#since = now()
  }

  /** Counts bytes received. */
  add(bytes: number): void {
    this.#bytes += bytes
  }

  /** Reading paused (backpressure from the client or the hasher): the time until {@link resume} is not the peer's. */
  pause(): void {
    if (this.#since === undefined) return
    this.#activeMs += this.#now() - this.#since
    this.#since = undefined
  }

  /** Reading resumed. */
  resume(): void {
    this.#since ??= this.#now()
  }

  /**
   * True when a whole window of reading time passed with fewer bytes than the bound asks; otherwise starts a new
   * window once the current one is full. Call it periodically.
   */
  tooSlow(): boolean {
    if (this.#minBytesPerSecond <= 0) return false
    const now = this.#now()
    if (this.#since !== undefined) {
      this.#activeMs += now - this.#since
      this.#since = now
    }
    if (this.#activeMs < this.#windowMs) return false
    if (this.#bytes < (this.#minBytesPerSecond * this.#activeMs) / 1000) return true
    this.#activeMs = 0
    this.#bytes = 0
    return false
  }

  /** Bytes per second over the current window so far (0 before any reading time). */
  get bytesPerSecond(): number {
    return this.#activeMs === 0 ? 0 : (this.#bytes * 1000) / this.#activeMs
  }
}
