/**
 * Rumors: the member records a node still spreads. Each is sent a bounded number of times (SWIM's λ·log n:
 * enough for an epidemic to reach every node with high probability), the least-sent first, a newer record of a
 * member replacing the older one in the queue.
 */
import type { MemberRecord } from './member-table.ts'

interface Rumor {
  record: MemberRecord
  sent: number
}

/**
 * How many times each node sends a rumor in a cluster of `members`: `multiplier` × ⌈log10(members + 1)⌉, as
 * memberlist (HashiCorp's SWIM) does.
 */
export function retransmitLimit(members: number, multiplier: number): number {
  return multiplier * Math.max(1, Math.ceil(Math.log10(members + 1)))
}

/** The rumors one node spreads. */
export class RumorQueue {
  private readonly byId = new Map<string, Rumor>()

  get size(): number {
    return this.byId.size
  }

  /** Queues a record to spread (replacing a queued one of the same member). */
  push(record: MemberRecord): void {
    this.byId.set(record.id, { record, sent: 0 })
  }

  /**
   * Up to `count` records for one message, least-sent first; each counts as sent once and leaves the queue when
   * it has been sent `limit` times.
   */
  take(count: number, limit: number): MemberRecord[] {
    const picked = [...this.byId.values()].sort((a, b) => a.sent - b.sent).slice(0, count)
    for (const rumor of picked) {
      rumor.sent++
      if (rumor.sent >= limit) this.byId.delete(rumor.record.id)
    }
    return picked.map((rumor) => rumor.record)
  }

  clear(): void {
    this.byId.clear()
  }
}
