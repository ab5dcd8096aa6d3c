import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { ConnectionPlan } from '../src/connection-plan.ts'
import {
  antiEntropyIntervalMs,
  type Liveness,
  type MemberRecord,
  MemberTable,
  supersedes
} from '../src/member-table.ts'
import { RumorQueue, retransmitLimit } from '../src/rumors.ts'
import { VirtualClock } from '../src/virtual-clock.ts'

const sha = (text: string): Uint8Array => createHash('sha256').update(text).digest()

function record(id: string, incarnation = 1, state: Liveness = 'alive'): MemberRecord {
  return { id, kad: sha(id), incarnation, state, addresses: [`/ip4/10.0.0.1/tcp/5001/p2p/${id}`] }
}

function tableOf(clock: VirtualClock, news: MemberRecord[] = []): MemberTable {
  return new MemberTable({
    self: record('self', 100),
    clock,
    suspectTimeoutMs: 5000,
    tombstoneMs: 60_000,
    onNews: (r) => news.push(r)
  })
}

describe('MemberTable', () => {
  it('orders records by incarnation, then left > dead > suspect > alive (property)', () => {
    const states: Liveness[] = ['alive', 'suspect', 'dead', 'left']
    const arb = fc.record({ incarnation: fc.nat(5), state: fc.constantFrom(...states) })
    fc.assert(
      fc.property(arb, arb, (a, b) => {
        const ra = record('m', a.incarnation, a.state)
        const rb = record('m', b.incarnation, b.state)
        // Exactly one of: a replaces b, b replaces a, or they are the same claim.
        const same = a.incarnation === b.incarnation && a.state === b.state
        assert.equal(Number(supersedes(ra, rb)) + Number(supersedes(rb, ra)) + Number(same), 1)
      })
    )
  })

  it('takes news and ignores what it already knows or what is older', () => {
    const news: MemberRecord[] = []
    const table = tableOf(new VirtualClock(), news)
    assert.equal(table.apply(record('a', 2)), true)
    assert.equal(table.apply(record('a', 2)), false)
    assert.equal(table.apply(record('a', 1, 'dead')), false)
    assert.equal(table.apply(record('a', 2, 'dead')), true)
    assert.equal(table.apply(record('a', 3)), true)
    assert.deepEqual(
      news.map((r) => `${r.incarnation}:${r.state}`),
      ['2:alive', '2:dead', '3:alive']
    )
  })

  it('declares a suspect dead after the suspicion timeout unless it refutes', () => {
    const clock = new VirtualClock()
    const table = tableOf(clock)
    table.apply(record('a'))
    table.apply(record('b'))
    assert.equal(table.suspect('a'), true)
    assert.equal(table.suspect('b'), true)
    clock.advance(4000)
    table.apply(record('b', 2)) // b heard it and refuted
    clock.advance(1000)
    assert.equal(table.get('a')?.state, 'dead')
    assert.equal(table.get('b')?.state, 'alive')
  })

  it('refutes a suspicion of itself with a higher incarnation', () => {
    const news: MemberRecord[] = []
    const table = tableOf(new VirtualClock(), news)
    assert.equal(table.apply(record('self', 100, 'suspect')), true)
    assert.equal(table.self.incarnation, 101)
    assert.equal(table.self.state, 'alive')
    assert.deepEqual(news, [table.self])
    assert.equal(table.apply(record('self', 99, 'dead')), false)
  })

  it('leaves out dead and left members and itself from the closest', () => {
    const table = tableOf(new VirtualClock())
    for (const id of ['a', 'b', 'c', 'd']) table.apply(record(id))
    table.apply(record('b', 1, 'dead'))
    table.apply(record('c', 1, 'left'))
    table.suspect('d')
    assert.deepEqual(
      table
        .closest(sha('x'), 10)
        .map((r) => r.id)
        .sort(),
      ['a', 'd']
    )
    assert.equal(table.reachableCount, 2)
  })

  it('drops tombstones after the tombstone time, and not before', () => {
    const clock = new VirtualClock()
    const table = tableOf(clock)
    table.apply(record('a', 1, 'left'))
    clock.advance(59_000)
    assert.equal(table.sweep(), 0)
    clock.advance(1000)
    assert.equal(table.sweep(), 1)
    assert.equal(table.get('a'), undefined)
  })
})

describe('RumorQueue', () => {
  it('sends the least-sent rumors first and drops each after its limit', () => {
    const rumors = new RumorQueue()
    rumors.push(record('a'))
    rumors.push(record('b'))
    assert.deepEqual(
      rumors.take(1, 2).map((r) => r.id),
      ['a']
    )
    assert.deepEqual(
      rumors.take(1, 2).map((r) => r.id),
      ['b']
    )
    assert.deepEqual(
      rumors
        .take(5, 2)
        .map((r) => r.id)
        .sort(),
      ['a', 'b']
    )
    assert.equal(rumors.size, 0)
  })

  it('replaces a queued rumor of a member with a newer one, sent afresh', () => {
    const rumors = new RumorQueue()
    rumors.push(record('a', 1))
    rumors.take(1, 3)
    rumors.push(record('a', 2))
    assert.deepEqual(rumors.take(5, 1), [record('a', 2)])
  })

  it('sends each rumor multiplier × ⌈log10(n + 1)⌉ times', () => {
    assert.equal(retransmitLimit(9, 4), 4)
    assert.equal(retransmitLimit(10_000, 4), 20)
    assert.equal(retransmitLimit(0, 4), 4)
  })
})

describe('ConnectionPlan', () => {
  function planOf(members: number, near: number, random: number, max: number) {
    const table = tableOf(new VirtualClock())
    for (let i = 0; i < members; i++) table.apply(record(`m${i}`))
    let seed = 1
    const randomSource = () => {
      seed = (seed * 48271) % 2147483647
      return seed / 2147483647
    }
    return { table, plan: new ConnectionPlan({ table, near, random, max, randomSource, graceMs: 100 }) }
  }

  it('plans the nearest members and distinct random others', () => {
    const { table, plan } = planOf(200, 8, 4, 64)
    const planned = plan.planned()
    assert.equal(planned.size, 12)
    for (const r of table.closest(table.self.kad, 8)) assert.ok(planned.has(r.id))
    assert.ok(!planned.has('self'))
  })

  it('replaces a random pick that died and keeps the live ones', () => {
    const { table, plan } = planOf(200, 2, 4, 64)
    const first = plan.planned()
    const near = new Set(table.closest(table.self.kad, 2).map((r) => r.id))
    const [gone, ...kept] = [...first].filter((id) => !near.has(id))
    table.apply(record(gone as string, 1, 'dead'))
    const second = plan.planned()
    assert.equal(second.size, 6)
    assert.ok(!second.has(gone as string))
    for (const id of kept) assert.ok(second.has(id))
  })

  it('plans only the members there are in a small cluster', () => {
    const { plan } = planOf(3, 8, 4, 64)
    assert.equal(plan.planned().size, 3)
  })

  it('closes unplanned connections over the bound, least recently used first', () => {
    const { plan } = planOf(10, 0, 0, 3)
    const connected = new Set(['m1', 'm2', 'm3', 'm4', 'm5'])
    for (const [i, id] of ['m1', 'm2', 'm3', 'm4', 'm5'].entries()) plan.used(id, i)
    plan.used('m1', 10)
    assert.deepEqual(plan.excess(connected, new Set(['m2']), 1000), ['m3', 'm4'])
    assert.deepEqual(plan.excess(new Set(['m1']), new Set(), 1000), [])
  })

  it('closes connections outside its neighbourhood before those inside (peers that likely planned it)', () => {
    const { table, plan } = planOf(40, 2, 0, 2)
    const inside = table.closest(table.self.kad, 4).map((r) => r.id)
    const outside = table
      .closest(table.self.kad, 40)
      .slice(4, 6)
      .map((r) => r.id)
    for (const [i, id] of [...inside, ...outside].entries()) plan.used(id, i)
    const planned = new Set(inside.slice(0, 2))
    assert.deepEqual(plan.excess(new Set([...inside, ...outside]), planned, 1000), [
      ...outside,
      ...inside.slice(2)
    ])
  })

  it('keeps a connection used within the grace time even over the bound', () => {
    const { plan } = planOf(10, 0, 0, 1)
    plan.used('m1', 0)
    plan.used('m2', 950)
    assert.deepEqual(plan.excess(new Set(['m1', 'm2', 'm3']), new Set(), 1000), ['m1'])
  })
})

describe('VirtualClock', () => {
  it('fires timers in time order, then in the order they were set, and skips cleared ones', () => {
    const clock = new VirtualClock()
    const fired: string[] = []
    clock.setTimeout(() => fired.push('b'), 20)
    clock.setTimeout(() => fired.push('a'), 10)
    clock.setTimeout(() => fired.push('c'), 20)
    clock.clearTimeout(clock.setTimeout(() => fired.push('x'), 15))
    clock.setTimeout(() => clock.setTimeout(() => fired.push('d'), 5), 20)
    clock.advance(24)
    assert.deepEqual(fired, ['a', 'b', 'c'])
    assert.equal(clock.now(), 24)
    clock.advance(1)
    assert.deepEqual(fired, ['a', 'b', 'c', 'd'])
  })
})

describe('pickRandom', () => {
  it('picks min(count, n) distinct items of the list (property)', async () => {
    const { pickRandom } = await import('../src/random-pick.ts')
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer()), fc.nat(20), (items, count) => {
        const picked = pickRandom([...items], count)
        assert.equal(picked.length, Math.min(count, items.length))
        assert.equal(new Set(picked).size, picked.length)
        for (const item of picked) assert.ok(items.includes(item))
      })
    )
  })
})

describe('whole-table sync interval', () => {
  it('is 100 ms a member, within 5 s and a minute', () => {
    assert.equal(antiEntropyIntervalMs(2), 5_000)
    assert.equal(antiEntropyIntervalMs(300), 30_000)
    assert.equal(antiEntropyIntervalMs(10_000), 60_000)
  })
})
