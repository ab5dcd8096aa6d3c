/**
 * Which members a node holds connections to, when it knows every member but may connect to only a bounded
 * number: its `near` closest members in Kademlia space (its neighbourhood: they hold the records it would hold,
 * and they watch each other for failure), a few members picked at random (short paths for gossip across the id
 * space), and the members it dialled on demand for a lookup or a provide, least recently used dropped first.
 * Connections beyond the bound are closed, unplanned ones least recently used first.
 */
import type { MemberTable } from './member-table.ts'

/** Options of {@link ConnectionPlan}. */
export interface ConnectionPlanInit {
  table: MemberTable
  /** Closest members kept connected. */
  near: number
  /** Members picked at random and kept connected. */
  random: number
  /** Most connections kept in all (planned, on demand and inbound). */
  max: number
  /** Connections used this recently are not closed for being over the bound, in ms. */
  graceMs: number
  /** Random numbers in [0, 1): Math.random by default (a seeded one in a simulator). */
  randomSource?: () => number
}

/** One node's connection plan. */
export class ConnectionPlan {
  private readonly randoms = new Set<string>()
  /** Every connection's last use, ms; a Map keeps insertion order, so re-inserting on use keeps it LRU-ordered. */
  private readonly lastUse = new Map<string, number>()
  private readonly random: () => number
  private readonly graceMs: number

  private readonly init: ConnectionPlanInit

  constructor(init: ConnectionPlanInit) {
    this.init = init
    this.random = init.randomSource ?? Math.random
    this.graceMs = init.graceMs
  }

  /** The members this node dials and keeps: the nearest, and the random picks (refilled as members go). */
  planned(): Set<string> {
    const { table, near } = this.init
    const plan = new Set(table.closest(table.self.kad, near).map((record) => record.id))
    for (const id of this.randoms) {
      const record = table.get(id)
      if (record === undefined || record.state === 'dead' || record.state === 'left' || plan.has(id))
        this.randoms.delete(id)
    }
    const wanted = Math.min(this.init.random, table.reachableCount - plan.size)
    for (let tries = 0; this.randoms.size < wanted && tries < wanted * 4; tries++) {
      const pick = table.store.randomReachable(this.random)
      if (pick === undefined || pick.id === table.self.id || plan.has(pick.id)) continue
      this.randoms.add(pick.id)
    }
    for (const id of this.randoms) plan.add(id)
    return plan
  }

  /** Notes that a connection was used (opened, or carried a request) at `now` ms. */
  used(id: string, now: number): void {
    this.lastUse.delete(id)
    this.lastUse.set(id, now)
  }

  /** Forgets a connection that closed. */
  closed(id: string): void {
    this.lastUse.delete(id)
  }

  /**
   * The connections to close so that at most `max` stay: unplanned ones, least recently used first — first those
   * outside this node's neighbourhood (twice `near` closest: the members that likely planned a connection to this
   * node), then the others. A connection used within the grace time is kept (a request may be on it).
   */
  excess(connected: ReadonlySet<string>, planned: ReadonlySet<string>, now: number): string[] {
    let over = connected.size - this.init.max
    const close: string[] = []
    if (over <= 0) return close
    const { table } = this.init
    const neighbourhood = new Set(table.closest(table.self.kad, 2 * this.init.near).map((r) => r.id))
    for (const spare of [false, true]) {
      for (const [id, used] of this.lastUse) {
        if (over === 0 || used > now - this.graceMs) break
        if (planned.has(id) || !connected.has(id) || neighbourhood.has(id) !== spare || close.includes(id))
          continue
        close.push(id)
        over--
      }
    }
    return close
  }
}
