/**
 * The claims an arbiter holds: the first node to claim a key holds it for a fixed time; later claimers are told
 * who holds it, and which nodes claimed it before them (they wait for the holder's bytes, and relay what they
 * receive). Bounded: past `maxEntries` the oldest claim goes first (every claim lives as long, so the oldest is the
 * next to expire anyway); at most `maxWaiting` of the later claimers are kept per claim, the earliest.
 */

/** A node holding a claim, and how to reach it (its addresses as the arbiter knows them, multiaddr bytes). */
export interface ClaimHolder {
  /** Its peer id. */
  id: string
  /** Its peer id's multihash bytes (as the wire carries it). */
  idBytes: Uint8Array
  addresses: Uint8Array[]
}

/** A claim: who holds it, and who claimed it after the holder (earliest first, never the holder). */
export interface ClaimState {
  holder: ClaimHolder
  waiting: ClaimHolder[]
}

interface Held extends ClaimState {
  /** When the claim ends, ms of `now()`. */
  expires: number
}

/** Options of {@link ClaimTable}. */
export interface ClaimTableInit {
  /** How long a claim is held, in ms. */
  holdMs: number
  /** Most claims held at once. */
  maxEntries: number
  /** Most later claimers kept per claim. */
  maxWaiting: number
  /** A monotonic time in ms; default `performance.now()`. */
  now?: () => number
}

/** First-come claims on keys, each held for `holdMs`. */
export class ClaimTable {
  private readonly held = new Map<string, Held>()
  private readonly init: ClaimTableInit
  private readonly now: () => number

  constructor(init: ClaimTableInit) {
    this.init = init
    this.now = init.now ?? (() => performance.now())
  }

  /**
   * Claims `key` for `claimer` unless another node holds it. Returns the claim as `claimer` should know it: the
   * holder (`claimer` when it won, or held it already — its claim is not extended) and the other claimers waiting
   * (never `claimer` itself); a claimer that lost is kept among the waiting while there is room.
   */
  claim(key: string, claimer: ClaimHolder): ClaimState {
    const current = this.held.get(key)
    if (current === undefined || current.expires <= this.now()) {
      if (current === undefined && this.held.size >= this.init.maxEntries) this.evictOldest()
      this.held.delete(key)
      this.held.set(key, { holder: claimer, waiting: [], expires: this.now() + this.init.holdMs })
      return { holder: claimer, waiting: [] }
    }
    const others = current.waiting.filter((w) => w.id !== claimer.id)
    const isNew = others.length === current.waiting.length && current.holder.id !== claimer.id
    if (isNew && current.waiting.length < this.init.maxWaiting) current.waiting.push(claimer)
    return { holder: current.holder, waiting: others }
  }

  /** The claim on `key` now, or undefined. */
  stateOf(key: string): ClaimState | undefined {
    const entry = this.held.get(key)
    if (entry === undefined) return undefined
    if (entry.expires > this.now()) return { holder: entry.holder, waiting: [...entry.waiting] }
    this.held.delete(key)
    return undefined
  }

  /** Ends the claim on `key`, whoever holds it. */
  release(key: string): void {
    this.held.delete(key)
  }

  /** Claims held now (expired ones not yet dropped included). */
  get size(): number {
    return this.held.size
  }

  private evictOldest(): void {
    // Map order is insertion order: the first entries are the oldest claims.
    for (const [key, entry] of this.held) {
      this.held.delete(key)
      if (entry.expires > this.now()) return
    }
  }
}
