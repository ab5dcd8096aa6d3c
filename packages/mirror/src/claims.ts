/**
 * Flash-crowd election: when several nodes miss the same blob at once, one of them fetches it from upstream and the
 * others wait for its bytes (served while they arrive).
 *
 * With a router that arbitrates claims (`Router.claim`: the libp2p and memory routers), the election is one claim on
 * the digest at its arbiter: the first node to claim fetches, and every other is told which node that is — one
 * round trip. Nodes with different views of the cluster may ask different arbiters, and then two fetch.
 *
 * Without it, the election runs on claim records: each node that misses a blob looks for claimers of it; with
 * none, it advertises a claim record (a DHT key derived from the digest), waits a settle time for concurrent claims to
 * land, and looks again: the claimer ranked first for the digest fetches. The settle time is twice what its own look
 * and claim took (a node that claims at the same moment takes about as long to land its claim), within bounds: a
 * miss on an idle cluster network costs milliseconds, and a loaded one waits longer. The rank is a hash of the digest and the
 * node's id, so every node computes the same winner and the blobs of one image are fetched by different nodes. A
 * node that finds claimers before it claims waits without claiming.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Digest } from '@kadmirror/oci'
import type { ClaimAnswer, Provider, Router } from '@kadmirror/routing'
import { CLAIM_SETTLE_MIN_MS } from './constants.ts'

/** What this node does about a blob nobody holds: fetch it from upstream (answer 404), or wait for another node's. */
export type ClaimRole = 'fetch' | 'wait'

/**
 * The outcome of an election: this node fetches, or waits — for one of `fetchers`, asked directly in order (a
 * download is served before its provider record has spread; at most {@link MAX_FETCHERS}). At an arbiter: the holder,
 * then nodes that lost before this one (they relay what they receive). On claim records: the claimers seen,
 * first-ranked first (a claimer that lost may not have withdrawn its claim yet).
 */
export type Election = { role: 'fetch' } | { role: 'wait'; fetchers: Provider[] }

/** The most claimers an {@link Election} names to a node that waits. */
export const MAX_FETCHERS = 3

/** Timers of {@link Claims}, replaceable in tests (a fake clock). */
export interface ClaimClock {
  /** Resolves after `ms`; rejects when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>
  /** Calls `fn` after `ms`, without keeping the process alive. */
  after(ms: number, fn: () => void): void
  /** A monotonic time in ms. */
  now(): number
}

/** Options of {@link Claims}. Times in ms. */
export interface ClaimsInit {
  router: Router
  /** This node's id as the router reports it to peers (a libp2p peer id). */
  selfId: string
  /**
   * Longest time between advertising a claim and reading the claims of the others; the time is twice what the first
   * look and the claim took, at least `settleMinMs`.
   */
  settleMs: number
  /** Shortest such time. Default {@link CLAIM_SETTLE_MIN_MS}, or `settleMs` when that is shorter. */
  settleMinMs?: number
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
  after: (ms, fn) => void setTimeout(fn, ms).unref(),
  now: () => performance.now()
}

/** Claims made by this node, and the elections it ran. */
export class Claims {
  private readonly init: ClaimsInit
  private readonly clock: ClaimClock
  /** Digests this node was elected to fetch, until their claim expires. */
  private readonly won = new Set<Digest>()
  /** Claim keys advertised now, each with the claim that holds it. */
  private readonly held = new Map<string, symbol>()
  /** The claimer that beat this node's claim on a digest, until that claim would have expired. */
  private readonly beaten = new Map<Digest, Provider>()

  constructor(init: ClaimsInit) {
    this.init = init
    this.clock = init.clock ?? realClock
  }

  /**
   * Decides whether this node fetches `digest` from upstream or waits for another node that does.
   * Rejects when `signal` aborts.
   */
  async elect(digest: Digest, signal: AbortSignal): Promise<Election> {
    if (this.won.has(digest)) return { role: 'fetch' }
    if (this.init.router.claim !== undefined) return this.arbitrated(digest, signal)
    const key = claimKey(digest)
    const started = this.clock.now()
    const early = ranked(digest, await this.claimers(key, signal))
    if (early.length > 0) return { role: 'wait', fetchers: early }
    await this.claim(digest, key)
    await this.clock.sleep(this.settleTime(this.clock.now() - started), signal)
    const others = ranked(digest, await this.claimers(key, signal))
    const first = others[0]
    if (first !== undefined && claimRank(digest, first.id) < claimRank(digest, this.init.selfId)) {
      // Lost: the claim goes at once, so that nodes asking later are not sent to a node that does not fetch.
      this.held.delete(key)
      this.init.router.withdraw([key]).catch(() => {})
      this.lost(digest, first)
      return { role: 'wait', fetchers: others }
    }
    this.won.add(digest)
    return { role: 'fetch' }
  }

  /**
   * The election at the digest's arbiter: one claim. A claim no arbiter answered rejects (the caller fetches: the
   * worst case stays the normal pull).
   */
  private async arbitrated(digest: Digest, signal: AbortSignal): Promise<Election> {
    const answer = await this.claimAtArbiter(digest, false, this.init.lookupTimeoutMs, signal)
    if (answer.won) {
      this.won.add(digest)
      this.clock.after(this.init.claimTtlMs, () => this.won.delete(digest))
      return { role: 'fetch' }
    }
    // An arbiter names the holder of a claim; without one (a holder with no usable address) nobody is waited for.
    if (answer.holder === undefined) return { role: 'fetch' }
    this.lost(digest, answer.holder)
    return { role: 'wait', fetchers: holderFirst(answer) }
  }

  private claimAtArbiter(
    digest: Digest,
    peek: boolean,
    timeoutMs: number,
    signal: AbortSignal
  ): Promise<ClaimAnswer> {
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
    return (this.init.router.claim as NonNullable<Router['claim']>).call(this.init.router, digest, {
      peek,
      signal: bounded
    })
  }

  /** Remembers the claimer that beat this node on `digest`, for the claim time: a peer asking is sent there. */
  private lost(digest: Digest, winner: Provider): void {
    this.beaten.set(digest, winner)
    this.clock.after(this.init.claimTtlMs, () => {
      if (this.beaten.get(digest) === winner) this.beaten.delete(digest)
    })
  }

  /**
   * How long to wait after a claim before reading the others' claims, given that the first look and the claim took
   * `raceMs`: another node that missed at the same moment may land its claim up to about that long after ours.
   */
  settleTime(raceMs: number): number {
    const { settleMs, settleMinMs = CLAIM_SETTLE_MIN_MS } = this.init
    return Math.min(settleMs, Math.max(settleMinMs, 2 * raceMs))
  }

  /**
   * The claimers of `digest` now, first-ranked first (at most {@link MAX_FETCHERS}), from a lookup of at most
   * `timeoutMs`: a node that waits reads them again, as a claimer that lost withdraws its claim. Rejects when
   * `signal` aborts.
   */
  async fetchers(digest: Digest, timeoutMs: number, signal: AbortSignal): Promise<Provider[]> {
    if (this.init.router.claim !== undefined) {
      const answer = await this.claimAtArbiter(digest, true, timeoutMs, signal)
      return answer.won ? [] : holderFirst(answer)
    }
    return ranked(digest, await this.claimers(claimKey(digest), signal, timeoutMs))
  }

  /**
   * The claimer that won the election this node lost on `digest` (for a while: the claim time), which fetches it: a
   * node asking this one for the blob is sent there.
   */
  winnerOf(digest: Digest): Provider | undefined {
    return this.beaten.get(digest)
  }

  /** True while this node is the elected fetcher of `digest` (its claim has not expired). */
  fetching(digest: Digest): boolean {
    return this.won.has(digest)
  }

  /** Claim records this node holds now (the election on claim records; none at an arbiter). */
  size(): number {
    return this.held.size
  }

  private async claim(digest: Digest, key: string): Promise<void> {
    if (this.held.has(key)) return
    const claim = Symbol(key)
    this.held.set(key, claim)
    this.clock.after(this.init.claimTtlMs, () => {
      if (this.held.get(key) !== claim) return // withdrawn when it lost; maybe claimed again since
      this.held.delete(key)
      this.won.delete(digest)
      this.init.router.withdraw([key]).catch(() => {})
    })
    await this.init.router.advertise([key])
  }

  /** The other nodes that claim `key` now. */
  private async claimers(
    key: string,
    signal: AbortSignal,
    timeoutMs = this.init.lookupTimeoutMs
  ): Promise<Provider[]> {
    const found: Provider[] = []
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
    try {
      for await (const provider of this.init.router.lookup(key, { count: 64, signal: bounded, fresh: true }))
        if (provider.id !== this.init.selfId) found.push(provider)
    } catch (err) {
      if (signal.aborted) throw err
    }
    return found
  }
}

/**
 * Whom a node that lost at the arbiter asks: the holder, then the nodes that lost before it (they relay what they
 * receive from the holder, which turns away peers past its fan-out); at most {@link MAX_FETCHERS}.
 */
function holderFirst(answer: { holder?: Provider; waiting?: Provider[] }): Provider[] {
  if (answer.holder === undefined) return []
  return [answer.holder, ...(answer.waiting ?? [])].slice(0, MAX_FETCHERS)
}

/** The first {@link MAX_FETCHERS} of `claimers` in their rank for `digest`, first-ranked first. */
function ranked(digest: Digest, claimers: Provider[]): Provider[] {
  return claimers
    .map((claimer) => ({ claimer, rank: claimRank(digest, claimer.id) }))
    .sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0))
    .slice(0, MAX_FETCHERS)
    .map((r) => r.claimer)
}
