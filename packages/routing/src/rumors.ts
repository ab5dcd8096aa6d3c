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

/** The rumors one node spreads, in buckets by how often each was sent (taking is linear in what is taken). */
export class RumorQueue {
  private readonly byId = new Map<string, Rumor>()
  /** Rumors by times sent: `bySent[n]` holds those sent n times. */
  private readonly bySent: Array<Set<Rumor>> = []

  get size(): number {
    return this.byId.size
  }

  /** Queues a record to spread (replacing a queued one of the same member). */
  push(record: MemberRecord): void {
    this.remove(record.id)
    const rumor = { record, sent: 0 }
    this.byId.set(record.id, rumor)
    this.bucket(0).add(rumor)
  }

  /**
   * Up to `count` records for one message, least-sent first; each counts as sent once and leaves the queue when
   * it has been sent `limit` times.
   */
  take(count: number, limit: number): MemberRecord[] {
    const picked: Rumor[] = []
    for (let sent = 0; sent < this.bySent.length && picked.length < count; sent++) {
      for (const rumor of this.bySent[sent] ?? []) {
        picked.push(rumor)
        if (picked.length === count) break
      }
    }
    for (const rumor of picked) {
      this.bySent[rumor.sent]?.delete(rumor)
      rumor.sent++
      if (rumor.sent >= limit) this.byId.delete(rumor.record.id)
      else this.bucket(rumor.sent).add(rumor)
    }
    return picked.map((rumor) => rumor.record)
  }

  clear(): void {
    this.byId.clear()
    this.bySent.length = 0
  }

  private remove(id: string): void {
    const rumor = this.byId.get(id)
    if (rumor === undefined) return
    this.byId.delete(id)
    this.bySent[rumor.sent]?.delete(rumor)
  }

  private bucket(sent: number): Set<Rumor> {
    let bucket = this.bySent[sent]
    if (bucket === undefined) {
      for (let i = this.bySent.length; i <= sent; i++) this.bySent[i] = new Set()
      bucket = this.bySent[sent] as Set<Rumor>
    }
    return bucket
  }
}
