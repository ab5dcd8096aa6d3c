import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { KadIndex } from '../src/kad-index.ts'
import { compareDistance } from '../src/keys.ts'
import {
  closest,
  connectedHoldersFirst,
  groupByHolder,
  type LookupPeer,
  type LookupStrategyInit,
  runLookupStrategy
} from '../src/strategy.ts'

/** A peer of a virtual network: its Kademlia id, the records it holds, and how it answers. */
interface VirtualPeer extends LookupPeer {
  records: Set<string>
  /** Delay before it answers, in ms; undefined never answers in time (rejects after `timeoutMs`). */
  delayMs?: number
  fails?: boolean
}

const sha = (text: string): Uint8Array => createHash('sha256').update(text).digest()

function virtualNetwork(size: number): VirtualPeer[] {
  return Array.from({ length: size }, (_, i) => ({
    key: `peer-${i}`,
    kad: sha(`peer-${i}`),
    records: new Set(),
    delayMs: 1
  }))
}

/** Places `key`'s record at the `replication` closest peers, as the router does. */
function place(peers: VirtualPeer[], key: string, replication: number): VirtualPeer[] {
  const holders = closest(peers, sha(key), replication)
  for (const holder of holders) holder.records.add(key)
  return holders
}

interface Answer {
  providers: string[]
  closer: VirtualPeer[]
}

/** Runs the strategy over the virtual network with a view of `view`; returns what it found and whom it asked. */
async function lookUp(
  view: VirtualPeer[],
  key: string,
  overrides: Partial<LookupStrategyInit<VirtualPeer, Answer>> & {
    closerOf?: (peer: VirtualPeer) => VirtualPeer[]
  } = {}
) {
  const target = sha(key)
  const asked: string[] = []
  const found: string[] = []
  const outcome = await runLookupStrategy<VirtualPeer, Answer>({
    target,
    candidates: closest(view, target, 20),
    alpha: 3,
    hedgeMs: 15,
    ask: (peer) => {
      asked.push(peer.key)
      return new Promise((resolve, reject) => {
        if (peer.fails === true) return reject(new Error(`${peer.key} refused`))
        const answer = {
          providers: peer.records.has(key) ? [peer.key] : [],
          closer: overrides.closerOf?.(peer) ?? []
        }
        setTimeout(
          () => (peer.delayMs === undefined ? reject(new Error('timeout')) : resolve(answer)),
          peer.delayMs ?? 200
        )
      })
    },
    read: async (_peer, answer) => {
      found.push(...answer.providers)
      return answer.closer
    },
    ...overrides
  })
  return { asked, found, outcome }
}

describe('lookup and placement strategy', () => {
  it('orders peers by XOR distance to the target, closest first', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 30 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.integer({ min: 1, max: 10 }),
        (ids, target, count) => {
          const peers = ids.map((kad) => ({ kad }))
          const top = closest(peers, target, count)
          const sorted = [...peers].sort((a, b) => compareDistance(a.kad, b.kad, target))
          assert.equal(top.length, Math.min(count, peers.length))
          for (const [i, peer] of top.entries())
            assert.equal(compareDistance(peer.kad, (sorted[i] as { kad: Uint8Array }).kad, target), 0)
        }
      )
    )
  })

  it('places each key at its replication closest peers, grouped by holder', () => {
    const peers = virtualNetwork(20)
    const keys = ['a', 'b', 'c'].map((key) => ({ target: sha(key), value: key }))
    const groups = groupByHolder(keys, peers, 5, (p) => p.key)
    const placements = groups.reduce((n, g) => n + g.values.length, 0)
    assert.equal(placements, 15)
    for (const key of keys) {
      const holders = groups
        .filter((g) => g.values.includes(key.value))
        .map((g) => g.holder.key)
        .sort()
      assert.deepEqual(
        holders,
        closest(peers, key.target, 5)
          .map((p) => p.key)
          .sort()
      )
    }
  })

  it('hands records only to the holders named in onlyTo', () => {
    const peers = virtualNetwork(20)
    const holders = closest(peers, sha('a'), 5)
    const joined = new Set([(holders[0] as VirtualPeer).key])
    const groups = groupByHolder([{ target: sha('a'), value: 'a' }], peers, 5, (p) => p.key, joined)
    assert.deepEqual(
      groups.map((g) => g.holder.key),
      [...joined]
    )
  })

  it('finds a record in one round by asking only the alpha closest peers when views agree', async () => {
    const peers = virtualNetwork(100)
    place(peers, 'sha256:aa', 5)
    const { asked, found, outcome } = await lookUp(peers, 'sha256:aa')
    assert.equal(asked.length, 3)
    assert.deepEqual(new Set(found).size, 3)
    assert.deepEqual(outcome, { asked: 3, answered: 3, failed: 0, rounds: 1 })
  })

  it('ends a miss after the alpha closest peers answered, without asking the rest', async () => {
    const { asked, found } = await lookUp(virtualNetwork(100), 'sha256:nobody')
    assert.deepEqual(found, [])
    assert.equal(asked.length, 3)
  })

  for (const [label, holders] of [
    ['', {}],
    [' (holders given)', { holders: 5 }]
  ] as const) {
    it(`asks the next closest peer when one of the closest is slow, and settles without waiting for it${label}`, async () => {
      const peers = virtualNetwork(50)
      const slow = place(peers, 'sha256:bb', 5)[0] as VirtualPeer
      slow.delayMs = 100
      const started = Date.now()
      const { asked, found } = await lookUp(peers, 'sha256:bb', holders)
      assert.equal(asked.length, 4)
      assert.equal(new Set(found).size, 3)
      assert.ok(!found.includes(slow.key))
      assert.ok(Date.now() - started < 100, 'the lookup waited for the slow peer')
    })
  }

  it('waits for slow holders rather than settle on the empty answers of farther peers', async () => {
    const peers = virtualNetwork(50)
    const holders = place(peers, 'sha256:slow-holders', 5)
    for (const holder of holders) holder.delayMs = 60
    const { found, outcome } = await lookUp(peers, 'sha256:slow-holders', { holders: 5 })
    assert.ok(found.length >= 3, `found ${found.length} providers`)
    assert.ok(outcome.asked > 3, 'the slow holders were hedged past')
  })

  it('settles on farther peers once every holder has failed', async () => {
    const peers = virtualNetwork(50)
    for (const holder of place(peers, 'sha256:dead-holders', 5)) holder.fails = true
    const { found, outcome } = await lookUp(peers, 'sha256:dead-holders', { holders: 5 })
    assert.deepEqual(found, [])
    assert.equal(outcome.failed, 5)
    assert.equal(outcome.answered, 3)
  })

  it('skips peers that fail and asks the next closest instead', async () => {
    const peers = virtualNetwork(50)
    const holders = place(peers, 'sha256:cc', 5)
    ;(holders[0] as VirtualPeer).fails = true
    ;(holders[1] as VirtualPeer).fails = true
    const failures: string[] = []
    const { asked, found, outcome } = await lookUp(peers, 'sha256:cc', {
      onFailure: (peer) => failures.push(peer.key)
    })
    assert.equal(asked.length, 5)
    assert.equal(outcome.failed, 2)
    assert.deepEqual(
      failures.sort(),
      [(holders[0] as VirtualPeer).key, (holders[1] as VirtualPeer).key].sort()
    )
    assert.equal(new Set(found).size, 3)
  })

  it('follows closer peers an answer names, beyond its own view', async () => {
    const peers = virtualNetwork(60)
    const holders = place(peers, 'sha256:dd', 3)
    // A view that lacks every holder: its members point at them.
    const view = peers.filter((p) => !holders.includes(p))
    const { found } = await lookUp(view, 'sha256:dd', { closerOf: () => holders })
    assert.equal(new Set(found).size, 3)
  })

  it('counts a second round when it asks peers that answers named', async () => {
    const peers = virtualNetwork(60)
    const holders = place(peers, 'sha256:dd', 3)
    const view = peers.filter((p) => !holders.includes(p))
    const { outcome } = await lookUp(view, 'sha256:dd', {
      closerOf: (peer) => (holders.includes(peer) ? [] : holders)
    })
    assert.equal(outcome.rounds, 2)
  })

  it('stops at once when stopped says so, asking nobody', async () => {
    const { asked, outcome } = await lookUp(virtualNetwork(10), 'sha256:ee', { stopped: () => true })
    assert.equal(outcome.rounds, 0)
    assert.deepEqual(asked, [])
  })

  it('hedges on a virtual clock when given one', async () => {
    const peers = virtualNetwork(10)
    const pending: Array<() => void> = []
    const timers = {
      setTimeout: (callback: () => void) => pending.push(callback),
      clearTimeout: () => {}
    }
    const target = sha('sha256:ff')
    const asked: string[] = []
    const answers: Array<(value: Answer) => void> = []
    const done = runLookupStrategy<VirtualPeer, Answer>({
      target,
      candidates: closest(peers, target, 20),
      alpha: 1,
      hedgeMs: 15,
      timers,
      ask: (peer) => {
        asked.push(peer.key)
        return new Promise((resolve) => answers.push(resolve))
      },
      read: async () => []
    })
    assert.equal(asked.length, 1)
    ;(pending.shift() as () => void)() // the first peer is slow: the next closest is asked
    assert.equal(asked.length, 2)
    for (const answer of answers) answer({ providers: [], closer: [] })
    assert.deepEqual(await done, { asked: 2, answered: 2, failed: 0, rounds: 1 })
  })

  it('waits for its closest peers to connect before settling on farther, connected peers', async () => {
    const peers = virtualNetwork(10)
    const key = 'sha256:connect-first'
    const holders = place(peers, key, 3)
    const holderKeys = new Set(holders.map((h) => h.key))
    // The holders need a 30 ms dial (above the 15 ms hedge); the others are connected and answer at once.
    const { found, outcome } = await lookUp(peers, key, {
      connect: (peer) =>
        holderKeys.has(peer.key) ? new Promise<void>((resolve) => setTimeout(resolve, 30)) : undefined,
      connectHedgeMs: 250
    })
    assert.equal(new Set(found).size, 3)
    assert.equal(outcome.asked, 3)
  })

  it('hedges past a peer whose connection takes longer than the connect hedge', async () => {
    const peers = virtualNetwork(10)
    const key = 'sha256:connect-stuck'
    const [stuck] = place(peers, key, 3) as [VirtualPeer]
    const { outcome } = await lookUp(peers, key, {
      connect: (peer) => (peer.key === stuck.key ? new Promise<void>(() => {}) : undefined),
      connectHedgeMs: 20
    })
    assert.equal(outcome.asked, 4)
    assert.equal(outcome.answered, 3)
  })

  it('asks connected holders before holders that need a dial, and no one else when they answer', async () => {
    const peers = virtualNetwork(40)
    const key = 'sha256:connected-first'
    const holders = place(peers, key, 5)
    const connected = new Set([holders[1], holders[3], holders[4]].map((h) => (h as VirtualPeer).key))
    const dialled: string[] = []
    const target = sha(key)
    const { asked, outcome } = await lookUp(peers, key, {
      candidates: connectedHoldersFirst(closest(peers, target, 20), 5, (p) => connected.has(p.key)),
      connect: (peer) => {
        if (connected.has(peer.key)) return undefined
        dialled.push(peer.key)
        return Promise.resolve()
      }
    })
    assert.deepEqual(new Set(asked), connected)
    assert.deepEqual(dialled, [])
    assert.equal(outcome.answered, 3)
  })

  it('hedges a slow peer to a connected peer before one that needs a dial', async () => {
    const peers = virtualNetwork(30)
    const key = 'sha256:hedge-connected'
    const target = sha(key)
    const order = closest(peers, target, 20)
    const [slow, , , needsDial, connected] = order as [
      VirtualPeer,
      VirtualPeer,
      VirtualPeer,
      VirtualPeer,
      VirtualPeer
    ]
    for (const peer of order) peer.delayMs = 1
    slow.delayMs = 100 // slow past the 15 ms hedge, answers before the 250 ms connect hedge
    const dialled: string[] = []
    const { asked } = await lookUp(peers, key, {
      connected: (peer) => peer.key !== needsDial.key,
      connect: (peer) => {
        if (peer.key !== needsDial.key) return undefined
        dialled.push(peer.key)
        return Promise.resolve()
      }
    })
    assert.deepEqual(dialled, [])
    assert.ok(asked.includes(connected.key))
  })

  it('hedges to a peer that needs a dial once a slow peer has taken the connect hedge', async () => {
    const peers = virtualNetwork(30)
    const key = 'sha256:hedge-stalled'
    const order = closest(peers, sha(key), 20)
    const [stuck, second, third, needsDial] = order as [VirtualPeer, VirtualPeer, VirtualPeer, VirtualPeer]
    for (const peer of [second, third, needsDial]) peer.delayMs = 1
    stuck.delayMs = 500
    const { asked } = await lookUp([stuck, second, third, needsDial], key, {
      connected: (peer) => peer.key !== needsDial.key,
      connect: (peer) => (peer.key === needsDial.key ? Promise.resolve() : undefined),
      connectHedgeMs: 40
    })
    assert.deepEqual(asked, [stuck.key, second.key, third.key, needsDial.key])
  })

  it('keeps the order of the candidates beyond the holders, and of each group', () => {
    const order = connectedHoldersFirst([1, 2, 3, 4, 5, 6, 7], 5, (n) => n % 2 === 0)
    assert.deepEqual(order, [2, 4, 1, 3, 5, 6, 7])
  })

  it('places keys the same from an index of the closest as from a list of peers', () => {
    const peers = virtualNetwork(60)
    const index = new KadIndex<VirtualPeer>()
    for (const peer of peers) index.set(peer.key, peer.kad, peer)
    const keys = Array.from({ length: 40 }, (_, i) => ({ target: sha(`key-${i}`), value: `key-${i}` }))
    const fromList = groupByHolder(keys, peers, 5, (p) => p.key)
    const fromIndex = groupByHolder(
      keys,
      (target, count) => index.closest(target, count),
      5,
      (p) => p.key
    )
    const byHolder = (groups: typeof fromList) =>
      Object.fromEntries(groups.map((g) => [g.holder.key, [...g.values].sort()]).sort())
    assert.deepEqual(byHolder(fromIndex), byHolder(fromList))
  })
})
