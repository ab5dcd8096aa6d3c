import assert from 'node:assert/strict'
import { routerConformance } from '../src/conformance.ts'
import { createMemoryNetwork, type LookupEvent, type ProvideEvent, type WithdrawEvent } from '../src/index.ts'

routerConformance('MemoryRouter', {
  async setup(count) {
    const network = createMemoryNetwork()
    return Array.from({ length: count }, (_, i) =>
      network.createRouter({ registryUrl: `http://node-${i}:5000` })
    )
  },
  async teardown(routers) {
    await Promise.all(routers.map((router) => router.close()))
  },
  settleMs: 100
})

describe('MemoryRouter', () => {
  it('refuses a second router with the same id on one network', () => {
    const network = createMemoryNetwork()
    network.createRouter({ id: 'a', registryUrl: 'http://a:5000' })
    assert.throws(
      () => network.createRouter({ id: 'a', registryUrl: 'http://b:5000' }),
      /already on this network/
    )
  })

  it('gives a provider its registry URL without a trailing slash', async () => {
    const network = createMemoryNetwork()
    const a = network.createRouter({ registryUrl: 'http://a:5000/' })
    const b = network.createRouter({ registryUrl: 'http://b:5000' })
    await a.advertise(['k'])
    const found = []
    for await (const provider of b.lookup('k')) found.push(provider.registryUrl)
    assert.deepEqual(found, ['http://a:5000'])
  })

  it('reports lookups, provides and withdrawals as events', async () => {
    const network = createMemoryNetwork()
    const a = network.createRouter({ registryUrl: 'http://a:5000' })
    const b = network.createRouter({ registryUrl: 'http://b:5000' })
    const provides: ProvideEvent[] = []
    const withdrawals: WithdrawEvent[] = []
    const lookups: LookupEvent[] = []
    a.events.on('provide', (e) => provides.push(e))
    a.events.on('withdraw', (e) => withdrawals.push(e))
    b.events.on('lookup', (e) => lookups.push(e))
    await a.advertise(['k1', 'k2'])
    for await (const _ of b.lookup('k1'));
    await a.withdraw(['k1'])
    for await (const _ of b.lookup('k1'));
    assert.deepEqual(
      provides.map((e) => [e.keys, e.reason]),
      [[2, 'advertise']]
    )
    assert.deepEqual(
      withdrawals.map((e) => e.keys),
      [1]
    )
    assert.deepEqual(
      lookups.map((e) => [e.key, e.providers, e.source]),
      [
        ['k1', 1, 'network'],
        ['k1', 0, 'network']
      ]
    )
  })
})
