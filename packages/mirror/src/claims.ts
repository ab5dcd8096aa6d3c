/**
 * Flash-crowd election: when several nodes miss the same blob at once, one of them fetches it from upstream and the
 * others wait for its bytes (served while they arrive). Each node that misses a blob looks for claimers of it; with
 * none, it advertises a claim record (a DHT key derived from the digest), waits a settle time for concurrent claims to
 * land, and looks again: the claimer ranked first for the digest fetches. The rank is a hash of the digest and the
 * node's id, so every node computes the same winner and the blobs of one image are fetched by different nodes. A
 * node that finds claimers before it claims waits without claiming.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Digest } from '@kadmirror/oci'
import type { Router } from '@kadmirror/routing'

/** What this node does about a blob nobody holds: fetch it from upstream (answer 404), or wait for another node's. */
export type ClaimRole = 'fetch' | 'wait'

/** Timers of {@link Claims}, replaceable in tests (a fake clock). */
export interface ClaimClock {
  /** Resolves after `ms`; rejects when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>
  /** Calls `fn` after `ms`, without keeping the process alive. */
  after(ms: number, fn: () => void): void
}

/** Options of {@link Claims}. Times in ms. */
export interface ClaimsInit {
  router: Router
  /** This node's id as the router reports it to peers (a libp2p peer id). */
  selfId: string
  /** Time between advertising a claim and reading the claims of the others. */
  settleMs: number
  /** A claim record is withdrawn this long after it was made (the fetch has started or failed by then). */
  claimTtlMs: number
  /** Longest time one lookup of claimers may take. */
  lookupTimeoutMs: number
  clock?: ClaimClock
}

/** The DHT key of the claims on `digest` (a key Spegel peers store and never ask for). */
export function claimKey(digest: Digest): string {
  return `kadmirror-claim/${digest}`
}

/** Where `id` ranks for `digest` (lower first): a hash, so that every node computes the same order. */
export function claimRank(digest: Digest, id: string): string {
  return createHash('sha256').update(`${digest}\n${id}`).digest('hex')
}

const realClock: ClaimClock = {
  sleep: (ms, signal) => sleep(ms, undefined, { signal }),
  after: (ms, fn) => void setTimeout(fn, ms).unref()
}

/** Claims made by this node, and the elections it ran. */
export class Claims {
  private readonly init: ClaimsInit
  private readonly clock: ClaimClock
  /** Digests this node was elected to fetch, until their claim expires. */
  private readonly won = new Set<Digest>()
  /** Claim keys advertised now. */
  private readonly held = new Set<string>()

  constructor(init: ClaimsInit) {
    this.init = init
    this.clock = init.clock ?? realClock
  }

  /**
   * Decides whether this node fetches `digest` from upstream or waits for another node that does.
   * Rejects when `signal` aborts.
   */
  async elect(digest: Digest, signal: AbortSignal): Promise<ClaimRole> {
    if (this.won.has(digest)) return 'fetch'
    const key = claimKey(digest)
    if ((await this.claimers(key, signal)).length > 0) return 'wait'
    await this.claim(digest, key)
    await this.clock.sleep(this.init.settleMs, signal)
    const claimers = [...(await this.claimers(key, signal)), this.init.selfId]
    const first = claimers.reduce((a, b) => (claimRank(digest, b) < claimRank(digest, a) ? b : a))
    if (first !== this.init.selfId) return 'wait'
    this.won.add(digest)
    return 'fetch'
  }

  /** Claims this node holds now (for tests and the debug page). */
  size(): number {
    return this.held.size
  }

  private async claim(digest: Digest, key: string): Promise<void> {
    if (this.held.has(key)) return
    this.held.add(key)
    this.clock.after(this.init.claimTtlMs, () => {
      this.held.delete(key)
      this.won.delete(digest)
      this.init.router.withdraw([key]).catch(() => {})
    })
    await this.init.router.advertise([key])
  }

  /** The other nodes' ids that claim `key` now. */
  private async claimers(key: string, signal: AbortSignal): Promise<string[]> {
    const ids: string[] = []
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(this.init.lookupTimeoutMs)])
    try {
      for await (const provider of this.init.router.lookup(key, { count: 64, signal: bounded, fresh: true }))
        ids.push(provider.id)
    } catch (err) {
      if (signal.aborted) throw err
    }
    return ids
  }
}
