/**
 * Cluster membership as a table every node keeps whole (id, Kademlia id, addresses: ~100 bytes a member), kept
 * in step by gossip with SWIM's rules instead of by holding a connection to every member: what a node says of a
 * member carries the member's incarnation; a later incarnation wins, and at one incarnation `left` > `dead` >
 * `suspect` > `alive`. A member suspected of failure becomes dead after a timeout unless it refutes (it hears
 * the suspicion and gossips itself alive at a higher incarnation). A node's first incarnation is its start time
 * in ms, so a restarted node outranks what the cluster remembers of its previous run. Dead and left members stay
 * as tombstones for a while, so a late rumor cannot bring them back.
 *
 * Storage is a {@link MemberStore}: a map with a Kademlia index here; a simulator shares one store between
 * many tables.
 */
import {
  ANTI_ENTROPY_INTERVAL_MS,
  ANTI_ENTROPY_MIN_INTERVAL_MS,
  ANTI_ENTROPY_MS_PER_MEMBER
} from './constants.ts'
import { KadIndex } from './kad-index.ts'
import type { Timers } from './strategy.ts'

/** What a node believes of a member. */
export type Liveness = 'alive' | 'suspect' | 'dead' | 'left'

/** What is said of one member: stored and gossiped. */
export interface MemberRecord {
  /** Peer id string. */
  readonly id: string
  /** Kademlia id (sha256 of the peer id's multihash). */
  readonly kad: Uint8Array
  /** The member's own counter: its start time in ms, raised by one for each refutation. */
  readonly incarnation: number
  readonly state: Liveness
  /** The multiaddrs it listens on, as strings. */
  readonly addresses: readonly string[]
}

const RANK: Record<Liveness, number> = { alive: 0, suspect: 1, dead: 2, left: 3 }

/** Whether `a` replaces `b` (a later incarnation, or the same with a stronger state). */
export function supersedes(a: MemberRecord, b: MemberRecord): boolean {
  return a.incarnation > b.incarnation || (a.incarnation === b.incarnation && RANK[a.state] > RANK[b.state])
}

/** Whether two records say the same of a member (the same incarnation and state). */
export function sameClaim(a: MemberRecord, b: MemberRecord): boolean {
  return a.id === b.id && a.incarnation === b.incarnation && a.state === b.state
}

/** Whether a lookup or a provide may use the member: alive, or suspected but not yet declared dead. */
export function reachable(record: MemberRecord): boolean {
  return record.state === 'alive' || record.state === 'suspect'
}

/** Where a {@link MemberTable} keeps its records. */
export interface MemberStore {
  get(id: string): MemberRecord | undefined
  set(record: MemberRecord): void
  delete(id: string): void
  /** Reachable members, closest to `target` first. */
  nearestReachable(target: Uint8Array): Iterable<MemberRecord>
  /** A reachable member picked at random, or undefined. */
  randomReachable(random: () => number): MemberRecord | undefined
  /** Reachable members. */
  readonly reachableCount: number
  records(): Iterable<MemberRecord>
}

/** A {@link MemberStore} in a map, with a Kademlia index of the reachable members. */
export class MapMemberStore implements MemberStore {
  private readonly all = new Map<string, MemberRecord>()
  private readonly index = new KadIndex<MemberRecord>()

  get(id: string): MemberRecord | undefined {
    return this.all.get(id)
  }

  set(record: MemberRecord): void {
    this.all.set(record.id, record)
    if (reachable(record)) this.index.set(record.id, record.kad, record)
    else this.index.delete(record.id)
  }

  delete(id: string): void {
    this.all.delete(id)
    this.index.delete(id)
  }

  nearestReachable(target: Uint8Array): Iterable<MemberRecord> {
    return this.index.nearest(target)
  }

  randomReachable(random: () => number): MemberRecord | undefined {
    return this.index.at(Math.floor(random() * this.index.size))
  }

  get reachableCount(): number {
    return this.index.size
  }

  records(): Iterable<MemberRecord> {
    return this.all.values()
  }
}

/**
 * How long a node waits before it tries one dead member again: `intervalMs` × members / 100 (at least 1×), jittered
 * by ±50 %: a cluster of any size makes about 100 tries per `intervalMs` in all (ten a second at 10 s).
 */
export function tombstoneRetryDelayMs(members: number, intervalMs: number, random: () => number): number {
  return intervalMs * Math.max(1, members / 100) * (0.5 + random())
}

/**
 * Time between two whole-table syncs of a node with `members` members (itself included), in ms:
 * {@link ANTI_ENTROPY_MS_PER_MEMBER} a member, within {@link ANTI_ENTROPY_MIN_INTERVAL_MS} and
 * {@link ANTI_ENTROPY_INTERVAL_MS} (a sync sends ~100 bytes a member).
 */
export function antiEntropyIntervalMs(members: number): number {
  return Math.min(
    ANTI_ENTROPY_INTERVAL_MS,
    Math.max(ANTI_ENTROPY_MIN_INTERVAL_MS, members * ANTI_ENTROPY_MS_PER_MEMBER)
  )
}

/** A clock: timers plus the current time in ms (the globals by default; virtual in a simulator). */
export interface Clock extends Timers {
  now(): number
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout)
}

/** Options of {@link MemberTable}. */
export interface MemberTableInit {
  /** This node, alive; its incarnation is its start time in ms. */
  self: MemberRecord
  store?: MemberStore
  clock?: Clock
  /** How long a suspected member may take to refute before it is declared dead, in ms. */
  suspectTimeoutMs: number
  /**
   * This node's local health score (0: healthy): a suspicion runs (1 + score) × `suspectTimeoutMs` (Lifeguard: a
   * node that is itself slow gives members longer to refute). @default always 0
   */
  healthScore?: () => number
  /** How long a dead or left member is remembered, in ms. */
  tombstoneMs: number
  /**
   * Called with each record that changed the table (news, to gossip on): received, suspected locally, timed out
   * to dead, or this node's own refutation.
   */
  onNews?(record: MemberRecord, previous: MemberRecord | undefined): void
}

/** One node's membership table. */
export class MemberTable {
  readonly store: MemberStore
  private readonly clock: Clock
  private readonly suspicions = new Map<string, unknown>()
  /** Tombstones by id: when they were laid, ms. */
  private readonly tombstones = new Map<string, number>()
  private current: MemberRecord

  private readonly init: MemberTableInit

  constructor(init: MemberTableInit) {
    this.init = init
    this.store = init.store ?? new MapMemberStore()
    this.clock = init.clock ?? systemClock
    this.current = init.self
    if (this.store.get(init.self.id) !== init.self) this.store.set(init.self)
  }

  /** This node's own record. */
  get self(): MemberRecord {
    return this.current
  }

  get(id: string): MemberRecord | undefined {
    return this.store.get(id)
  }

  /**
   * Merges what a peer said of a member; returns true when it was news. A record saying this node is suspect,
   * dead or left is refuted: this node gossips itself alive at a higher incarnation instead.
   */
  apply(record: MemberRecord): boolean {
    if (record.id === this.current.id) return this.refute(record)
    const previous = this.store.get(record.id)
    if (previous !== undefined && !supersedes(record, previous)) return false
    this.store.set(record)
    this.track(record)
    this.init.onNews?.(record, previous)
    return true
  }

  /** This node's own failure detection: a member it could not reach is suspected (news when it was alive). */
  suspect(id: string): boolean {
    const record = this.store.get(id)
    if (record?.state !== 'alive' || id === this.current.id) return false
    return this.apply({ ...record, state: 'suspect' })
  }

  /** This node leaves: its record says so, to gossip before it stops. */
  leave(): MemberRecord {
    this.current = { ...this.current, state: 'left' }
    this.store.set(this.current)
    this.init.onNews?.(this.current, undefined)
    return this.current
  }

  /** The `count` reachable members closest to `target`, closest first, this node excluded. */
  closest(target: Uint8Array, count: number): MemberRecord[] {
    const out: MemberRecord[] = []
    if (count <= 0) return out
    for (const record of this.store.nearestReachable(target)) {
      if (record.id === this.current.id) continue
      out.push(record)
      if (out.length === count) break
    }
    return out
  }

  /** Reachable members other than this node. */
  get reachableCount(): number {
    return this.store.reachableCount - 1
  }

  /** A dead or left member picked at random (to try again: a partition may have healed), or undefined. */
  randomTombstone(random: () => number): MemberRecord | undefined {
    const ids = [...this.tombstones.keys()]
    const id = ids[Math.floor(random() * ids.length)]
    return id === undefined ? undefined : this.store.get(id)
  }

  /** Drops tombstones older than the tombstone time; returns how many. */
  sweep(): number {
    const before = this.clock.now() - this.init.tombstoneMs
    let dropped = 0
    for (const [id, laid] of this.tombstones) {
      if (laid > before) continue
      this.tombstones.delete(id)
      this.store.delete(id)
      dropped++
    }
    return dropped
  }

  /** Stops the suspicion timers. */
  stop(): void {
    for (const timer of this.suspicions.values()) this.clock.clearTimeout(timer)
    this.suspicions.clear()
  }

  private refute(record: MemberRecord): boolean {
    if (record.state === 'alive' || record.incarnation < this.current.incarnation) return false
    if (this.current.state === 'left') return false
    this.current = { ...this.current, incarnation: record.incarnation + 1, state: 'alive' }
    this.store.set(this.current)
    this.init.onNews?.(this.current, record)
    return true
  }

  /** Starts or ends the member's suspicion timer and tombstone as its state says. */
  private track(record: MemberRecord): void {
    const timer = this.suspicions.get(record.id)
    if (timer !== undefined) {
      this.clock.clearTimeout(timer)
      this.suspicions.delete(record.id)
    }
    if (reachable(record)) this.tombstones.delete(record.id)
    else this.tombstones.set(record.id, this.clock.now())
    if (record.state !== 'suspect') return
    const handle = this.clock.setTimeout(
      () => {
        this.suspicions.delete(record.id)
        if (this.store.get(record.id) === record) this.apply({ ...record, state: 'dead' })
      },
      this.init.suspectTimeoutMs * (1 + (this.init.healthScore?.() ?? 0))
    )
    this.suspicions.set(record.id, handle)
  }
}
