/**
 * Membership storage for a simulated cluster: one shared table of what every node agrees on (the base) and, per
 * node, only where its view differs (rumors it has heard that not all have). A real node keeps its whole table
 * (a MapMemberStore, ~100 bytes a member); 10 000 simulated nodes each keeping 10 000 members would need
 * gigabytes, while their differences are a few rumors each. {@link foldAgreed} moves what every live node agrees
 * on into the base.
 */
import {
  compareDistance,
  KadIndex,
  type MapMemberStore,
  type MemberRecord,
  type MemberStore,
  reachable,
  sameClaim
} from '@kadmirror/routing/membership'

/** One node's view: the base, with its own differences on top. */
export class OverlayMemberStore implements MemberStore {
  /** Records that differ from the base; null where this node dropped a record the base still has. */
  readonly own = new Map<string, MemberRecord | null>()
  private readonly ownIndex = new KadIndex<MemberRecord>()
  /** This node's reachable count minus the base's. */
  private delta = 0

  readonly base: MapMemberStore

  constructor(base: MapMemberStore, from?: OverlayMemberStore) {
    this.base = base
    if (from !== undefined) for (const [id, record] of from.own) this.put(id, record)
  }

  get(id: string): MemberRecord | undefined {
    const own = this.own.get(id)
    return own === null ? undefined : (own ?? this.base.get(id))
  }

  set(record: MemberRecord): void {
    this.put(record.id, record)
  }

  delete(id: string): void {
    this.put(id, null)
  }

  /** Drops this node's difference for `id` (the base now says the same). */
  forget(id: string): void {
    const own = this.own.get(id)
    if (own === undefined) return
    this.delta -= reach(own) - reach(this.base.get(id) ?? null)
    this.own.delete(id)
    this.ownIndex.delete(id)
  }

  private put(id: string, record: MemberRecord | null): void {
    this.forget(id)
    if (record !== null && record === this.base.get(id)) return
    this.own.set(id, record)
    this.delta += reach(record) - reach(this.base.get(id) ?? null)
    if (record !== null && reachable(record)) this.ownIndex.set(id, record.kad, record)
  }

  *nearestReachable(target: Uint8Array): Generator<MemberRecord, void, undefined> {
    const fromBase = this.base.nearestReachable(target)[Symbol.iterator]()
    const fromOwn = this.ownIndex.nearest(target)
    let b = this.nextOfBase(fromBase)
    let o = fromOwn.next().value
    while (b !== undefined || o !== undefined) {
      if (o === undefined || (b !== undefined && compareDistance(b.kad, o.kad, target) <= 0)) {
        yield b as MemberRecord
        b = this.nextOfBase(fromBase)
      } else {
        yield o
        o = fromOwn.next().value
      }
    }
  }

  /** The next base record this node has no difference for. */
  private nextOfBase(iterator: Iterator<MemberRecord>): MemberRecord | undefined {
    for (;;) {
      const next = iterator.next()
      if (next.done === true) return undefined
      if (!this.own.has(next.value.id)) return next.value
    }
  }

  randomReachable(random: () => number): MemberRecord | undefined {
    for (let tries = 0; tries < 8; tries++) {
      const pick = this.base.randomReachable(random)
      if (pick === undefined) return undefined
      const mine = this.get(pick.id)
      if (mine !== undefined && reachable(mine)) return mine
    }
    return undefined
  }

  get reachableCount(): number {
    return this.base.reachableCount + this.delta
  }

  *records(): Generator<MemberRecord, void, undefined> {
    for (const record of this.base.records()) if (!this.own.has(record.id)) yield record
    for (const record of this.own.values()) if (record !== null) yield record
  }
}

function agree(a: MemberRecord | null | undefined, b: MemberRecord | null): boolean {
  return a === b || (a !== undefined && a !== null && b !== null && sameClaim(a, b))
}

function reach(record: MemberRecord | null): number {
  return record !== null && reachable(record) ? 1 : 0
}

/**
 * Moves into the base every record all `views` hold alike (the same claim, or all dropped), and drops
 * those differences from every view; returns how many ids were folded. Views of stopped nodes are left out.
 */
export function foldAgreed(base: MapMemberStore, views: OverlayMemberStore[]): number {
  const candidates = new Set<string>()
  for (const view of views) for (const id of view.own.keys()) candidates.add(id)
  let folded = 0
  for (const id of candidates) {
    const first = views[0]?.own.get(id)
    if (first === undefined || !views.every((view) => agree(view.own.get(id), first))) continue
    for (const view of views) view.forget(id)
    if (first === null) base.delete(id)
    else base.set(first)
    folded++
  }
  return folded
}
