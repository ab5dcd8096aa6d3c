/**
 * The claims an arbiter holds: the first node to claim a key holds it for a fixed time; later claimers are told
 * who holds it. Bounded: past `maxEntries` the oldest claim goes first (every claim lives as long, so the oldest
 * is the next to expire anyway).
 */

/** A node holding a claim, and how to reach it (its addresses as the arbiter knows them, multiaddr bytes). */
export interface ClaimHolder {
  /** Its peer id. */
  id: string
  /** Its peer id's multihash bytes (as the wire carries it). */
  idBytes: Uint8Array
  addresses: Uint8Array[]
}

interface Held {
  holder: ClaimHolder
  /** When the claim ends, ms of `now()`. */
  expires: number
}

/** Options of {@link ClaimTable}. */
export interface ClaimTableInit {
  /** How long a claim is held, in ms. */
  holdMs: number
  /** Most claims held at once. */
  maxEntries: number
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
   * Claims `key` for `claimer` unless another node holds it; returns the holder after the claim (`claimer` when it
   * won, or held it already — its claim is not extended).
   */
  claim(key: string, claimer: ClaimHolder): ClaimHolder {
    const current = this.holderOf(key)
    if (current !== undefined) return current
    if (this.held.size >= this.init.maxEntries) this.evictOldest()
    this.held.set(key, { holder: claimer, expires: this.now() + this.init.holdMs })
    return claimer
  }

  /** The node that holds `key` now, or undefined. */
  holderOf(key: string): ClaimHolder | undefined {
    const entry = this.held.get(key)
    if (entry === undefined) return undefined
    if (entry.expires > this.now()) return entry.holder
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
