/**
 * Placement of one provider's records as membership changes: each advertised key's records belong at the
 * `replication` reachable members closest to it. The placement remembers each key's holders, so a member that
 * joins costs one distance comparison per key (is it closer than the farthest holder?) and one that leaves a set
 * check per key, instead of a search of the whole membership per key; only the holders that changed are sent
 * records.
 */
import { compareDistance } from './keys.ts'
import type { MemberRecord } from './member-table.ts'

/** A key a provider advertises: its Kademlia target and what is sent for it. */
export interface PlacedRecord<V> {
  readonly target: Uint8Array
  readonly value: V
}

/** Records to send to one holder. */
export interface Handoff<V> {
  holder: MemberRecord
  values: V[]
}

interface Placed<V> {
  record: PlacedRecord<V>
  /** Its holders, closest first. */
  holders: MemberRecord[]
}

/** Options of {@link Placement}. */
export interface PlacementInit {
  /** Members holding each key's records. */
  replication: number
  /** The `count` reachable members closest to `target`, closest first, this node excluded. */
  closest(target: Uint8Array, count: number): MemberRecord[]
}

/** Where one provider's records are held. */
export class Placement<V> {
  private readonly placed = new Map<V, Placed<V>>()

  private readonly init: PlacementInit

  constructor(init: PlacementInit) {
    this.init = init
  }

  get size(): number {
    return this.placed.size
  }

  /** Places keys; returns the records to send, grouped by holder. */
  add(records: Iterable<PlacedRecord<V>>): Array<Handoff<V>> {
    const out = new Sends<V>()
    for (const record of records) {
      const holders = this.init.closest(record.target, this.init.replication)
      this.placed.set(record.value, { record, holders })
      for (const holder of holders) out.add(holder, record.value)
    }
    return out.list()
  }

  /** Stops placing a key; returns its holders (to withdraw from). */
  remove(value: V): MemberRecord[] {
    const placed = this.placed.get(value)
    this.placed.delete(value)
    return placed?.holders ?? []
  }

  /** A member joined (or came back): the keys it now holds among the closest, to send to it. */
  joined(member: MemberRecord): Array<Handoff<V>> {
    const out = new Sends<V>()
    const { replication } = this.init
    for (const placed of this.placed.values()) {
      const { holders, record } = placed
      if (holders.some((h) => h.id === member.id)) continue
      const farthest = holders[holders.length - 1]
      const closer = farthest === undefined || compareDistance(member.kad, farthest.kad, record.target) < 0
      if (!closer && holders.length >= replication) continue
      placed.holders = this.init.closest(record.target, replication)
      if (placed.holders.some((h) => h.id === member.id)) out.add(member, record.value)
    }
    return out.list()
  }

  /** A member left or died: the keys it held, placed at the members that take its place. */
  left(id: string): Array<Handoff<V>> {
    const out = new Sends<V>()
    for (const placed of this.placed.values()) {
      if (!placed.holders.some((h) => h.id === id)) continue
      const before = new Set(placed.holders.map((h) => h.id))
      placed.holders = this.init.closest(placed.record.target, this.init.replication)
      for (const holder of placed.holders) if (!before.has(holder.id)) out.add(holder, placed.record.value)
    }
    return out.list()
  }
}

/** Records grouped by holder. */
class Sends<V> {
  private readonly byHolder = new Map<string, Handoff<V>>()

  add(holder: MemberRecord, value: V): void {
    let handoff = this.byHolder.get(holder.id)
    if (handoff === undefined) {
      handoff = { holder, values: [] }
      this.byHolder.set(holder.id, handoff)
    }
    handoff.values.push(value)
  }

  list(): Array<Handoff<V>> {
    return [...this.byHolder.values()]
  }
}
