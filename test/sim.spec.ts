// bench/sim's simulated cluster, small enough for CI: the membership design (gossip, bounded connections,
// one-round lookups) holds its properties on the router's own code.
import assert from 'node:assert/strict'
import { SimCluster } from '../bench/src/sim/cluster.ts'
import { DEFAULT_MODEL, DEFAULT_SETTINGS } from '../bench/src/sim/defaults.ts'
import type { SimSettings } from '../bench/src/sim/sim-node.ts'

/** A smaller neighbourhood and bound than the defaults, so that 300 nodes hold many unconnected members. */
const settings: SimSettings = { ...DEFAULT_SETTINGS, near: 8, random: 4, maxConnections: 24 }
const model = DEFAULT_MODEL

describe('bench/sim: the gossip membership design on a virtual network', function () {
  this.timeout(120_000)

  it('finds every provider in one round, no node beyond its bound but for a dial in its grace time', async () => {
    const cluster = new SimCluster(settings, model, 5, 7)
    cluster.build(300)
    cluster.lookupLoad('steady', 50, 1, 10_000)
    await cluster.run(12_000)
    assert.ok(cluster.lookups.length > 300)
    assert.ok(cluster.lookups.every((l) => l.ok && l.hops === 1))
    // Beyond the bound only for the grace time after a dial on demand (a request may be on it).
    const most = Math.max(...cluster.liveNodes().map((n) => n.connections.size))
    assert.ok(most <= settings.maxConnections + 2, `${most} connections`)
  })

  it('spreads crashes, leaves and joins to 99 % of the nodes, and keeps finding providers through churn', async () => {
    const cluster = new SimCluster(settings, model, 5, 8)
    cluster.build(300)
    cluster.churn(30, 60_000) // 10 % a minute, each way
    cluster.lookupLoad('churn', 50, 1, 60_000)
    await cluster.run(75_000)
    const spread = cluster.spreads.filter((s) => s.ms !== undefined)
    assert.ok(cluster.spreads.length > 40)
    assert.equal(spread.length, cluster.spreads.length)
    // A crash: suspicion (5 s) then gossip; a leave or a join: gossip alone.
    assert.ok(spread.every((s) => (s.ms as number) < (s.kind === 'crash' ? 8000 : 3000)))
    const ok = cluster.lookups.filter((l) => l.ok).length / cluster.lookups.length
    assert.ok(ok > 0.99, `found ${ok}`)
    assert.ok(cluster.converged())
  })

  it('heals a partition: every view holds every live node again', async () => {
    const cluster = new SimCluster(settings, model, 5, 9)
    cluster.build(200)
    cluster.partition(90_000, 20)
    await cluster.run(90_000)
    assert.ok(!cluster.converged())
    let healedAfterMs = 0
    while (!cluster.converged() && healedAfterMs < 180_000) {
      await cluster.run(1000)
      healedAfterMs += 1000
    }
    assert.ok(cluster.converged(), 'not healed within 3 minutes')
  })
})
