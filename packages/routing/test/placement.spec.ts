import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { type Liveness, type MemberRecord, MemberTable } from '../src/member-table.ts'
import { Placement } from '../src/placement.ts'
import { VirtualClock } from '../src/virtual-clock.ts'

const sha = (text: string): Uint8Array => createHash('sha256').update(text).digest()
const record = (id: string, state: Liveness = 'alive', incarnation = 1): MemberRecord => ({
  id,
  kad: sha(id),
  incarnation,
  state,
  addresses: []
})

function setup(members: number) {
  const table = new MemberTable({
    self: record('self'),
    clock: new VirtualClock(),
    suspectTimeoutMs: 1000,
    tombstoneMs: 1000
  })
  for (let i = 0; i < members; i++) table.apply(record(`m${i}`))
  const placement = new Placement<string>({ replication: 3, closest: (t, n) => table.closest(t, n) })
  const keys = Array.from({ length: 50 }, (_, i) => ({ target: sha(`key-${i}`), value: `key-${i}` }))
  return { table, placement, keys }
}

/** Holder id → values, sorted, from a list of handoffs. */
const sends = (handoffs: Array<{ holder: MemberRecord; values: string[] }>) =>
  Object.fromEntries(handoffs.map((h) => [h.holder.id, [...h.values].sort()]).sort())

describe('Placement', () => {
  it('sends each key to its closest members', () => {
    const { table, placement, keys } = setup(30)
    const expected = new Map<string, string[]>()
    for (const key of keys)
      for (const holder of table.closest(key.target, 3))
        expected.set(holder.id, [...(expected.get(holder.id) ?? []), key.value])
    assert.deepEqual(
      sends(placement.add(keys)),
      Object.fromEntries([...expected].map(([id, v]) => [id, v.sort()]).sort())
    )
  })

  it('sends a joining member exactly the keys it is now among the closest for', () => {
    const { table, placement, keys } = setup(30)
    placement.add(keys)
    table.apply(record('newcomer'))
    const wanted = keys.filter((k) => table.closest(k.target, 3).some((h) => h.id === 'newcomer'))
    const handoffs = placement.joined(record('newcomer'))
    assert.ok(wanted.length > 0)
    assert.deepEqual(sends(handoffs), { newcomer: wanted.map((k) => k.value).sort() })
  })

  it("moves a departed holder's keys to the members that take its place", () => {
    const { table, placement, keys } = setup(30)
    placement.add(keys)
    const gone = (table.closest((keys[0] as { target: Uint8Array }).target, 1)[0] as MemberRecord).id
    const before = new Map(keys.map((k) => [k.value, new Set(table.closest(k.target, 3).map((h) => h.id))]))
    table.apply(record(gone, 'dead'))
    const handoffs = placement.left(gone)
    for (const { holder, values } of handoffs)
      for (const value of values) assert.ok(!before.get(value)?.has(holder.id), `${value} sent again`)
    const moved = handoffs.flatMap((h) => h.values).sort()
    const held = keys
      .filter((k) => before.get(k.value)?.has(gone))
      .map((k) => k.value)
      .sort()
    assert.deepEqual(moved, held)
  })
})
