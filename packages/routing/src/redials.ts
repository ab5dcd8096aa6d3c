/**
 * When a router dials again the DHT peers it knows of but is not connected to: peers it was connected to (they
 * dropped; known from the peer store) and peers it learnt of but could not reach (a dial that failed, or one not
 * started because too many were running). Dials to learnt peers fail while a cluster forms — 1 064 of them while
 * 100 nodes formed in one process, most because the other side was closing a duplicate connection at that moment
 * — and without a retry such a peer came back only when a later peer exchange happened to name it again.
 */

/** Options of {@link RedialSchedule}. */
export interface RedialScheduleInit {
  /** Wait after the first failure, in ms; doubled by each further failure. */
  baseMs: number
  /** Longest wait between two dials of a peer, in ms. */
  maxMs: number
  /** Failures after which a peer is forgotten (it left the cluster). */
  maxFailures: number
  /** The clock, in ms; default `Date.now`. */
  now?: () => number
}

interface RedialState<P> {
  peer: P
  failures: number
  /** When the peer may be dialled again, ms on the schedule's clock. */
  next: number
}

/** Backoff state per unconnected peer, keyed by peer id string; `P` is the peer id type. */
export class RedialSchedule<P> {
  private readonly states = new Map<string, RedialState<P>>()
  /** Learnt peers not reached yet (the others come from the caller's peer store at each round). */
  private readonly unreachedPeers = new Map<string, P>()
  private readonly init: RedialScheduleInit
  private readonly now: () => number

  constructor(init: RedialScheduleInit) {
    this.init = init
    this.now = init.now ?? Date.now
  }

  /** Whether any peer waits for a dial: learnt but unreached, or with failed redials. */
  get pending(): boolean {
    return this.states.size > 0 || this.unreachedPeers.size > 0
  }

  private backoff(failures: number): number {
    return Math.min(this.init.maxMs, this.init.baseMs * 2 ** (failures - 1))
  }

  /**
   * A learnt peer this node could not reach: after a failed dial (`failed`) it is due once the first wait has
   * passed; a peer that was never dialled is due at the next round.
   */
  unreached(key: string, peer: P, failed: boolean): void {
    this.unreachedPeers.set(key, peer)
    if (failed && !this.states.has(key))
      this.states.set(key, { peer, failures: 1, next: this.now() + this.backoff(1) })
  }

  /** The peer is connected: its state is dropped. */
  reached(key: string): void {
    this.states.delete(key)
    this.unreachedPeers.delete(key)
  }

  /** A dial returned by {@link due} failed: the next waits twice as long. */
  failed(key: string): void {
    const state = this.states.get(key)
    if (state === undefined) return
    state.failures++
    state.next = this.now() + this.backoff(state.failures)
  }

  /**
   * The peers to dial now: of `known` (the peers of the peer store that speak the DHT protocol) and the unreached
   * ones, those whose wait has passed. Peers `connected` says are connected are dropped, those `dialling` says are
   * being dialled are skipped; peers that failed `maxFailures` times are returned in `forget` and dropped.
   */
  due(
    known: Iterable<readonly [string, P]>,
    connected: (key: string, peer: P) => boolean,
    dialling: (key: string) => boolean
  ): { dial: Array<[string, P]>; forget: P[] } {
    const now = this.now()
    const candidates = new Map<string, P>(this.unreachedPeers)
    for (const [key, peer] of known) candidates.set(key, peer)
    const dial: Array<[string, P]> = []
    const forget: P[] = []
    for (const [key, peer] of candidates) {
      if (connected(key, peer)) {
        this.reached(key)
        continue
      }
      if (dialling(key)) continue
      let state = this.states.get(key)
      if (state === undefined) {
        state = { peer, failures: 0, next: now }
        this.states.set(key, state)
      }
      if (state.next > now) continue
      if (state.failures >= this.init.maxFailures) {
        this.reached(key)
        forget.push(peer)
        continue
      }
      dial.push([key, peer])
    }
    return { dial, forget }
  }
}
