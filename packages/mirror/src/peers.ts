/**
 * Choosing peers: the providers a lookup yields, in order, minus the peers to avoid for a while, and the
 * response times that set when a second peer is asked.
 */
import type { Provider, Router } from '@kadmirror/routing'

/** Peers not to ask for a while: they failed, or sent bytes that did not match their digest. */
export class PeerAvoidList {
  readonly #until = new Map<string, number>()

  /** Avoids `peer` for `ms` milliseconds (a longer avoidance already in place is kept). */
  avoid(peer: string, ms: number): void {
    const until = Date.now() + ms
    if ((this.#until.get(peer) ?? 0) < until) this.#until.set(peer, until)
    if (this.#until.size > 4096) this.#sweep()
  }

  /** True while `peer` is avoided. */
  has(peer: string): boolean {
    const until = this.#until.get(peer)
    if (until === undefined) return false
    if (until > Date.now()) return true
    this.#until.delete(peer)
    return false
  }

  /** Forgets every avoidance (a peer that served correctly again is trusted again). */
  clear(peer: string): void {
    this.#until.delete(peer)
  }

  #sweep(): void {
    const now = Date.now()
    for (const [peer, until] of this.#until) if (until <= now) this.#until.delete(peer)
  }
}

/** Recent peer response times, for the hedge delay: the `percentile` of the window, at least `minMs`. */
export class LatencyWindow {
  readonly #samples: number[] = []
  readonly #size: number
  #next = 0

  constructor(size: number) {
    this.#size = size
  }

  /** Records one response time, in ms. */
  observe(ms: number): void {
    if (this.#samples.length < this.#size) this.#samples.push(ms)
    else this.#samples[this.#next] = ms
    this.#next = (this.#next + 1) % this.#size
  }

  /** The `percentile` (0–1) of the recorded times, or undefined with no samples. */
  percentile(percentile: number): number | undefined {
    if (this.#samples.length === 0) return undefined
    const sorted = [...this.#samples].sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.floor(percentile * sorted.length))]
  }
}

/**
 * The providers of one key, pulled from the router's lookup as they come. {@link ProviderQueue.take} waits
 * at most a given time for the next one that is not avoided.
 */
export class ProviderQueue {
  readonly #ready: Provider[] = []
  readonly #seen = new Set<string>()
  readonly #waiters = new Set<() => void>()
  readonly #avoid: PeerAvoidList
  #done = false
  #error: unknown

  constructor(router: Router, key: string, count: number, signal: AbortSignal, avoid: PeerAvoidList) {
    this.#avoid = avoid
    void this.#pull(router, key, count, signal)
  }

  /** True once the lookup ended and every provider was taken. */
  get exhausted(): boolean {
    return this.#done && this.#ready.length === 0
  }

  /** The error the lookup ended with, if it failed. */
  get error(): unknown {
    return this.#error
  }

  /**
   * The next provider, waiting at most `timeoutMs`; undefined when the lookup ended without another one,
   * or the time ran out.
   */
  async take(timeoutMs: number): Promise<Provider | undefined> {
    const ready = this.#shift()
    if (ready !== undefined || this.#done) return ready
    if (timeoutMs <= 0) return undefined
    return new Promise((resolve) => {
      const wake = (): void => {
        const next = this.#shift()
        if (next === undefined && !this.#done) return
        finish(next)
      }
      const finish = (provider: Provider | undefined): void => {
        clearTimeout(timer)
        this.#waiters.delete(wake)
        resolve(provider)
      }
      const timer = setTimeout(() => finish(this.#shift()), timeoutMs)
      this.#waiters.add(wake)
    })
  }

  /** Returns a provider that was taken but not used (its request was cancelled), to be taken again first. */
  putBack(provider: Provider): void {
    if (!this.#ready.includes(provider)) this.#ready.unshift(provider)
  }

  #shift(): Provider | undefined {
    let provider = this.#ready.shift()
    while (provider !== undefined && this.#avoid.has(provider.id)) provider = this.#ready.shift()
    return provider
  }

  async #pull(router: Router, key: string, count: number, signal: AbortSignal): Promise<void> {
    try {
      for await (const provider of router.lookup(key, { count, signal })) {
        if (this.#seen.has(provider.id) || this.#avoid.has(provider.id)) continue
        this.#seen.add(provider.id)
        this.#ready.push(provider)
        this.#wake()
      }
    } catch (err) {
      if (!signal.aborted) this.#error = err
    } finally {
      this.#done = true
      this.#wake()
    }
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake()
  }
}
