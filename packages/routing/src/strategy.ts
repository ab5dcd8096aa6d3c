/**
 * The lookup and placement strategy as plain functions over a view, with no libp2p in them: which peers hold a
 * key's records (the `replication` closest by XOR distance), and whom a lookup asks (the `alpha` closest, one
 * round, hedging to the next closest when one is slow, following closer peers when an answer names any). The
 * libp2p router runs them over its cluster view; tests and simulators run them over a virtual network.
 */
import { compareDistance } from './keys.ts'

/** A peer placed in Kademlia space: its Kademlia id (sha256 of its peer id's multihash). */
export interface PlacedPeer {
  readonly kad: Uint8Array
}

/** Timers a lookup uses for hedging: the globals by default, a virtual clock in a simulator. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

const globalTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout)
}

/** The `count` peers closest to `target`, closest first (ties keep the order of `peers`). */
export function closest<P extends PlacedPeer>(peers: Iterable<P>, target: Uint8Array, count: number): P[] {
  const top: P[] = []
  if (count <= 0) return top
  for (const peer of peers) {
    if (top.length === count && compareDistance(peer.kad, (top[count - 1] as P).kad, target) >= 0) continue
    let i = top.length
    while (i > 0 && compareDistance(peer.kad, (top[i - 1] as P).kad, target) < 0) i--
    top.splice(i, 0, peer)
    if (top.length > count) top.pop()
  }
  return top
}

/** Inserts `peer` into `sorted` (closest to `target` first), after the peers as close as it. */
export function insertByDistance<P extends PlacedPeer>(sorted: P[], peer: P, target: Uint8Array): void {
  let i = sorted.length
  while (i > 0 && compareDistance(peer.kad, (sorted[i - 1] as P).kad, target) < 0) i--
  sorted.splice(i, 0, peer)
}

/**
 * The candidates of a lookup with the connected ones among the first `holders` (the peers that hold the key's
 * records) moved ahead of those not connected, each group in its order: asked first, they answer without a dial.
 * With bounded connections (gossip mode) most lookups then need no dial at a few hundred nodes, and a hit rarely
 * waits for one; with every peer connected the order is unchanged.
 */
export function connectedHoldersFirst<P>(
  candidates: readonly P[],
  holders: number,
  connected: (peer: P) => boolean
): P[] {
  const head = candidates.slice(0, holders)
  return [...head.filter(connected), ...head.filter((p) => !connected(p)), ...candidates.slice(holders)]
}

/** A key to place: its Kademlia target and what is sent for it (a multihash, say). */
export interface PlacedKey<V> {
  readonly target: Uint8Array
  readonly value: V
}

/**
 * Placement: the values of `keys` grouped by the peers that hold their records, the `replication` closest of
 * `peers` to each key (`peers` may instead be a function that answers the closest, from an index). Only holders
 * whose id is in `onlyTo` when it is given (a handoff to peers that joined).
 */
export function groupByHolder<P extends PlacedPeer, V>(
  keys: Iterable<PlacedKey<V>>,
  peers: Iterable<P> | ((target: Uint8Array, count: number) => P[]),
  replication: number,
  idOf: (peer: P) => string,
  onlyTo?: ReadonlySet<string>
): Array<{ holder: P; values: V[] }> {
  const groups = new Map<string, { holder: P; values: V[] }>()
  const all = typeof peers === 'function' ? [] : [...peers]
  const closestOf =
    typeof peers === 'function' ? peers : (target: Uint8Array) => closest(all, target, replication)
  for (const key of keys) {
    for (const holder of closestOf(key.target, replication)) {
      const id = idOf(holder)
      if (onlyTo !== undefined && !onlyTo.has(id)) continue
      let group = groups.get(id)
      if (group === undefined) {
        group = { holder, values: [] }
        groups.set(id, group)
      }
      group.values.push(key.value)
    }
  }
  return [...groups.values()]
}

/** A peer a lookup may ask: its Kademlia id and a unique string id. */
export interface LookupPeer extends PlacedPeer {
  readonly key: string
}

/** Options of {@link runLookupStrategy}. */
export interface LookupStrategyInit<P extends LookupPeer, A> {
  /** The key's Kademlia id. */
  target: Uint8Array
  /** The peers of the view closest to the target, closest first (a frontier of K, say). */
  candidates: readonly P[]
  /** Peers asked at once, plus one for each that is slow. */
  alpha: number
  /**
   * The first `holders` candidates hold the key's records when views agree (the replication closest). The lookup
   * does not settle before `alpha` of them (or all that have not failed) have answered: a slow holder is hedged
   * past, but empty answers of farther peers, which hold no record, never end a lookup on their own (else a hit
   * whose holders are slow for a moment reads as a miss). Callers bound the wait with their own deadline.
   * @default every candidate counts as a holder
   */
  holders?: number
  /** How long a peer may take before the next closest is asked too, in ms. */
  hedgeMs: number
  /** Asks one peer; rejects when it fails (it is then skipped). */
  ask(peer: P): Promise<A>
  /**
   * Opens a connection to a peer before it is asked, or returns undefined when one is open. A peer being
   * connected to counts as slow only after `connectHedgeMs`: the hedge measures answers, not connection set-up
   * (else a lookup whose closest peers all need a dial would settle on farther, connected peers' empty answers).
   * Rejects when the peer cannot be reached (it is then skipped).
   */
  connect?(peer: P): Promise<void> | undefined
  /**
   * Whether a peer can be asked without a dial (`connect` would return undefined). Given, a hedge for a peer that
   * is slow to answer goes only to peers that need no dial until the slow peer has taken `connectHedgeMs`: a dial
   * costs more than the wait it would save (a noise handshake's CPU at both ends, and a connection the other
   * side may have to close). @default every peer counts as connected
   */
  connected?(peer: P): boolean
  /**
   * How long opening a connection may take before the next closest peer is asked too, and how long a peer may
   * take to answer before a peer that needs a dial is asked instead, in ms. @default 250 ms
   */
  connectHedgeMs?: number
  /**
   * Handles an answer (emits its providers) and returns the closer peers it names; the peer counts as answered
   * only once this resolves, so a lookup never settles while an answer is being read.
   */
  read(peer: P, answer: A): Promise<readonly P[]>
  /** Called for a peer whose ask or read failed while the lookup was still running. */
  onFailure?(peer: P, error: unknown): void
  /** Ends the lookup early when it returns true (the router closed). */
  stopped?(): boolean
  timers?: Timers
}

/** What a lookup did. */
export interface LookupOutcome {
  /** Peers asked. */
  asked: number
  /** Peers whose answers were read. */
  answered: number
  /** Peers that failed. */
  failed: number
  /**
   * Rounds: 1 when only candidates were asked, one more for each step through closer peers that answers named and
   * that were then asked; 0 when nobody was asked.
   */
  rounds: number
}

/**
 * A peer's state in a lookup: `slow` once it has taken `hedgeMs` to answer (a peer that needs no dial may be asked
 * instead), `stalled` once it has taken `connectHedgeMs` to answer or to connect (any peer may).
 */
type State = 'new' | 'connecting' | 'asking' | 'slow' | 'stalled' | 'reading' | 'done' | 'failed'

/** Default of {@link LookupStrategyInit.connectHedgeMs}, in ms. */
const CONNECT_HEDGE_MS = 250

/** One lookup's frontier and the state of each peer in it. */
class LookupRun<P extends LookupPeer, A> {
  private readonly frontier: P[]
  private readonly states = new Map<string, State>()
  /** Each peer's round: 1 for candidates, one more than the peer whose answer named it. */
  private readonly rounds = new Map<string, number>()
  private readonly timers: Timers
  /** Keys of the candidates expected to hold the records (see {@link LookupStrategyInit.holders}). */
  private readonly holderKeys: ReadonlySet<string>
  private inFlight = 0
  private finished = false
  private resolve: (() => void) | undefined
  readonly outcome: LookupOutcome = { asked: 0, answered: 0, failed: 0, rounds: 0 }

  private readonly init: LookupStrategyInit<P, A>

  constructor(init: LookupStrategyInit<P, A>) {
    this.init = init
    this.frontier = [...init.candidates]
    for (const peer of this.frontier) {
      this.states.set(peer.key, 'new')
      this.rounds.set(peer.key, 1)
    }
    this.timers = init.timers ?? globalTimers
    const holders = init.holders ?? init.candidates.length
    this.holderKeys = new Set(init.candidates.slice(0, holders).map((peer) => peer.key))
  }

  run(): Promise<LookupOutcome> {
    return new Promise((resolve) => {
      this.resolve = () => resolve(this.outcome)
      this.schedule()
    })
  }

  private finish(): void {
    this.finished = true
    this.resolve?.()
  }

  /**
   * The window: the closest peers that have not failed, `alpha` of them plus one more for each that is slow to
   * answer (hedging) — a peer that needs a dial only while the window holds fewer than `alpha` plus the stalled
   * ones. Asks the new ones in it. The lookup has settled when every peer in the window has answered or is slow,
   * and at least `alpha` (or all there are) have answered, holders among them as {@link holdersHeard} says; or when
   * nothing is in flight.
   */
  private schedule(): void {
    if (this.finished || this.init.stopped?.() === true) {
      this.finish()
      return
    }
    let size = this.init.alpha
    let dialSize = this.init.alpha
    let length = 0
    let answered = 0
    let settled = true
    for (const peer of this.frontier) {
      if (length === size) break
      const state = this.states.get(peer.key)
      if (state === 'failed') continue
      if (state === 'new' && length >= dialSize && this.init.connected?.(peer) === false) continue
      length++
      if (state === 'slow') size++
      else if (state === 'stalled') {
        size++
        dialSize++
      } else if (state === 'done') answered++
      else settled = false
      if (state === 'new') this.ask(peer)
    }
    const heard = settled && answered >= Math.min(this.init.alpha, length) && this.holdersHeard()
    if (heard || this.inFlight === 0) this.finish()
  }

  /** Whether `alpha` of the holders, or every holder that has not failed when fewer remain, have answered. */
  private holdersHeard(): boolean {
    let live = 0
    let answered = 0
    for (const key of this.holderKeys) {
      const state = this.states.get(key)
      if (state === 'failed') continue
      live++
      if (state === 'done') answered++
    }
    return answered >= Math.min(this.init.alpha, live)
  }

  private ask(peer: P): void {
    this.inFlight++
    this.outcome.asked++
    this.outcome.rounds = Math.max(this.outcome.rounds, this.rounds.get(peer.key) ?? 1)
    const connecting = this.init.connect?.(peer)
    let hedge = connecting === undefined ? this.hedge(peer, 'asking') : this.hedge(peer, 'connecting')
    const asked =
      connecting === undefined
        ? this.init.ask(peer)
        : connecting.then(() => {
            if (this.states.get(peer.key) === 'connecting') {
              this.timers.clearTimeout(hedge.timer)
              hedge = this.hedge(peer, 'asking')
            }
            return this.init.ask(peer)
          })
    asked
      .then((answer) => this.read(peer, answer))
      .catch((err: unknown) => {
        this.states.set(peer.key, 'failed')
        this.outcome.failed++
        if (!this.finished) this.init.onFailure?.(peer, err)
      })
      .finally(() => {
        this.timers.clearTimeout(hedge.timer)
        this.inFlight--
        if (!this.finished) this.schedule()
      })
  }

  /**
   * Sets the peer's state and times it: asking, it is slow after `hedgeMs`; connecting or asking, it is stalled
   * after `connectHedgeMs` (each step grows the window). Returns the timer, cleared when the peer moves on.
   */
  private hedge(peer: P, state: 'connecting' | 'asking'): { timer: unknown } {
    this.states.set(peer.key, state)
    const stallMs = this.init.connectHedgeMs ?? CONNECT_HEDGE_MS
    const mark = (from: State, to: State): boolean => {
      if (this.states.get(peer.key) !== from) return false
      this.states.set(peer.key, to)
      this.schedule()
      return true
    }
    if (state === 'connecting')
      return { timer: this.timers.setTimeout(() => mark(state, 'stalled'), stallMs) }
    const handle = {
      timer: this.timers.setTimeout(() => {
        // Timed further only while it is still slow (not answered, nor the lookup settled).
        if (!mark(state, 'slow') || this.finished) return
        const rest = Math.max(0, stallMs - this.init.hedgeMs)
        handle.timer = this.timers.setTimeout(() => mark('slow', 'stalled'), rest)
      }, this.init.hedgeMs)
    }
    return handle
  }

  /** Reads an answer unless the lookup has settled meanwhile (late answers are dropped). */
  private async read(peer: P, answer: A): Promise<void> {
    if (this.finished) return
    this.states.set(peer.key, 'reading')
    const round = (this.rounds.get(peer.key) ?? 1) + 1
    for (const closer of await this.init.read(peer, answer)) {
      if (this.states.has(closer.key)) continue
      this.states.set(closer.key, 'new')
      this.rounds.set(closer.key, round)
      insertByDistance(this.frontier, closer, this.init.target)
    }
    this.states.set(peer.key, 'done')
    this.outcome.answered++
  }
}

/**
 * Runs one lookup round over `candidates` (more rounds only when answers name closer peers) and resolves when it
 * has settled. Answers that arrive after that are dropped; `ask` should time out by itself.
 */
export function runLookupStrategy<P extends LookupPeer, A>(
  init: LookupStrategyInit<P, A>
): Promise<LookupOutcome> {
  return new LookupRun(init).run()
}
