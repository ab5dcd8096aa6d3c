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
  /** Random numbers in [0, 1): Math.random by default (a seeded one in a simulator). */
  randomSource?: () => number
}

/** One node's connection plan. */
export class ConnectionPlan {
  private readonly randoms = new Set<string>()
  /** Every connection's last use, ms; a Map keeps insertion order, so re-inserting on use keeps it LRU-ordered. */
  private readonly lastUse = new Map<string, number>()
  private readonly random: () => number

  private readonly init: ConnectionPlanInit

  constructor(init: ConnectionPlanInit) {
    this.init = init
    this.random = init.randomSource ?? Math.random
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

  /** The connections to close so that at most `max` stay: unplanned ones, least recently used first. */
  excess(connected: ReadonlySet<string>, planned: ReadonlySet<string>): string[] {
    let over = connected.size - this.init.max
    const close: string[] = []
    if (over <= 0) return close
    for (const id of this.lastUse.keys()) {
      if (over === 0) break
      if (planned.has(id) || !connected.has(id)) continue
      close.push(id)
      over--
    }
    return close
  }
}
