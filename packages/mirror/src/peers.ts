/**
 * Choosing peers: the providers a lookup yields, in order, minus the peers to avoid for a while, and the
 * response times that set when a second peer is asked.
 */
import type { Provider, Router } from '@kadmirror/routing'
import { PEER_RTT_WEIGHT, UNCONNECTED_GRACE_MS } from './constants.ts'

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

/** Most peers whose answer time is kept (the oldest is forgotten first). */
const MAX_PEER_RTTS = 4096

/** Each peer's answer time to a blob request, a running average in ms: nearer, less loaded peers answer sooner. */
export class PeerRtt {
  readonly #rtt = new Map<string, number>()

  /** Adds one answer time of `peer`, in ms. */
  observe(peer: string, ms: number): void {
    const previous = this.#rtt.get(peer)
    this.#rtt.delete(peer)
    this.#rtt.set(peer, previous === undefined ? ms : previous + PEER_RTT_WEIGHT * (ms - previous))
    if (this.#rtt.size > MAX_PEER_RTTS) this.#rtt.delete(this.#rtt.keys().next().value as string)
  }

  /** The running average of `peer`, or undefined before its first answer. */
  get(peer: string): number | undefined {
    return this.#rtt.get(peer)
  }
}

/** Picks which of the candidate providers to ask next: an index into `candidates` (never empty). */
export type ProviderChoice = (candidates: readonly Provider[]) => number

/** Asks the first candidate: the lookup's order. */
export const lookupOrder: ProviderChoice = () => 0

/**
 * Spreads the load: the candidate with the least answer time times a random factor in [0.5, 1.5) — nearer peers
 * first, but N nodes asking at once do not all pick the same one (peers never measured count as the median of
 * those that were, or all alike).
 */
export function spreadOrder(rtt: PeerRtt, random: () => number = Math.random): ProviderChoice {
  return (candidates) => {
    const known = candidates.map((p) => rtt.get(p.id)).filter((ms): ms is number => ms !== undefined)
    const typical = known.length === 0 ? 1 : (known.sort((a, b) => a - b)[known.length >> 1] as number)
    let best = 0
    let bestScore = Number.POSITIVE_INFINITY
    for (const [i, provider] of candidates.entries()) {
      const score = (rtt.get(provider.id) ?? typical) * (0.5 + random())
      if (score < bestScore) {
        best = i
        bestScore = score
      }
    }
    return best
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
  readonly #choose: ProviderChoice
  #done = false
  #error: unknown

  constructor(
    router: Router,
    key: string,
    count: number,
    signal: AbortSignal,
    avoid: PeerAvoidList,
    choose: ProviderChoice = lookupOrder,
    fresh = false
  ) {
    this.#avoid = avoid
    this.#choose = choose
    void this.#pull(router, key, count, signal, fresh)
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
   * or the time ran out. A provider the router is connected to is preferred: while only records of unconnected
   * peers (possibly stale) are at hand, a connected one is awaited for up to {@link UNCONNECTED_GRACE_MS} more.
   */
  async take(timeoutMs: number): Promise<Provider | undefined> {
    const connected = this.#shift(true)
    if (connected !== undefined || this.#done || timeoutMs <= 0) return connected ?? this.#shift(false)
    const deadline = performance.now() + timeoutMs
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined
      let settled = false
      const arm = (): void => {
        clearTimeout(timer)
        const left = deadline - performance.now()
        const wait = this.#ready.length > 0 ? Math.min(left, UNCONNECTED_GRACE_MS) : left
        timer = setTimeout(() => finish(this.#shift(false)), Math.max(0, wait))
      }
      const check = (): void => {
        const next = this.#shift(true)
        if (next !== undefined || this.#done) finish(next ?? this.#shift(false))
        else if (this.#ready.length > 0) arm()
      }
      // A lookup yields the providers of one answer a microtask apart: choosing among them (not the lookup's first)
      // waits for the rest of the batch, one turn of the event loop.
      let deferred = false
      const wake = (): void => {
        if (this.#choose === lookupOrder) {
          check()
          return
        }
        if (deferred) return
        deferred = true
        setImmediate(() => {
          deferred = false
          if (!settled) check()
        })
      }
      const finish = (provider: Provider | undefined): void => {
        settled = true
        clearTimeout(timer)
        this.#waiters.delete(wake)
        resolve(provider)
      }
      this.#waiters.add(wake)
      arm()
    })
  }

  /** Returns a provider that was taken but not used (its request was cancelled), to be taken again first. */
  putBack(provider: Provider): void {
    if (!this.#ready.includes(provider)) this.#ready.unshift(provider)
  }

  /** Takes the next provider not avoided: a connected one only, or (`connectedOnly` false) preferably one. */
  #shift(connectedOnly: boolean): Provider | undefined {
    for (let i = this.#ready.length - 1; i >= 0; i--) {
      if (this.#avoid.has((this.#ready[i] as Provider).id)) this.#ready.splice(i, 1)
    }
    const connected = this.#ready.filter((provider) => provider.connected !== false)
    if (connected.length === 0 && connectedOnly) return undefined
    const candidates = connected.length > 0 ? connected : this.#ready
    if (candidates.length === 0) return undefined
    const chosen = candidates[
      Math.min(candidates.length - 1, Math.max(0, this.#choose(candidates)))
    ] as Provider
    return this.#ready.splice(this.#ready.indexOf(chosen), 1)[0]
  }

  async #pull(
    router: Router,
    key: string,
    count: number,
    signal: AbortSignal,
    fresh: boolean
  ): Promise<void> {
    try {
      for await (const provider of router.lookup(key, { count, signal, fresh })) {
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
