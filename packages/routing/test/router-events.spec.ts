import assert from 'node:assert/strict'
import {
  type BootstrapEvent,
  type FailureEvent,
  type LookupEvent,
  type PeerJoinEvent,
  type PeerLeaveEvent,
  type ProvideEvent,
  staticBootstrapper,
  type WithdrawEvent
} from '../src/index.ts'
import { startNode, stopAll, waitFor } from './cluster.ts'

const KEY = `sha256:${'ab'.repeat(32)}`

describe('Libp2pRouter events', function () {
  this.timeout(30_000)

  it('reports a peer joining and leaving the view', async () => {
    const a = await startNode()
    const joins: PeerJoinEvent[] = []
    const leaves: PeerLeaveEvent[] = []
    a.events.on('peer:join', (e) => joins.push(e))
    a.events.on('peer:leave', (e) => leaves.push(e))
    const b = await startNode({
      bootstrapper: staticBootstrapper(a.addresses().map((x) => `${x}/p2p/${a.peerId}`))
    })
    try {
      await waitFor(() => joins.length === 1, 10_000, 'a join')
      assert.deepEqual(joins, [{ peer: b.peerId, kadmirror: true }])
      await b.close()
      await waitFor(() => leaves.length === 1, 10_000, 'a leave')
      assert.deepEqual(leaves, [{ peer: b.peerId }])
    } finally {
      await stopAll([a, b])
    }
  })

  it('reports each bootstrap round, with the peers it was given and reached', async () => {
    const a = await startNode()
    const dead = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGRUVh9Ybm1yQy8Kca6wMRnLzSwz6VA9iaEgEQy3ZUWnD'
    const bootstrapper = staticBootstrapper([...a.addresses().map((x) => `${x}/p2p/${a.peerId}`), dead])
    const b = await startNode({ bootstrapper })
    const rounds: BootstrapEvent[] = []
    const failures: FailureEvent[] = []
    b.events.on('bootstrap', (e) => rounds.push(e))
    b.events.on('failure', (e) => failures.push(e))
    try {
      assert.equal(await b.bootstrap(), true)
      // The loop's own first round may report too: every round was given both peers and reached one.
      assert.ok(rounds.length >= 1)
      for (const round of rounds)
        assert.deepEqual([round.peers, round.reached, round.error], [2, 1, undefined])
      assert.ok(
        failures.some((f) => f.operation === 'bootstrap'),
        JSON.stringify(failures.map((f) => f.operation))
      )
    } finally {
      await stopAll([a, b])
    }
  })

  it('reports a provide, the lookups that found it (network, then cache) and a withdrawal', async () => {
    const a = await startNode()
    const b = await startNode({
      bootstrapper: staticBootstrapper(a.addresses().map((x) => `${x}/p2p/${a.peerId}`))
    })
    const provides: ProvideEvent[] = []
    const withdrawals: WithdrawEvent[] = []
    const lookups: LookupEvent[] = []
    a.events.on('provide', (e) => provides.push(e))
    a.events.on('withdraw', (e) => withdrawals.push(e))
    b.events.on('lookup', (e) => lookups.push(e))
    try {
      await waitFor(async () => (await a.ready()) && (await b.ready()), 10_000, 'both nodes ready')
      await a.advertise([KEY])
      for await (const _ of b.lookup(KEY));
      for await (const _ of b.lookup(KEY));
      await a.withdraw([KEY])
      assert.deepEqual(
        provides.map((e) => [e.keys, e.peers, e.failures, e.reason]),
        [[1, 1, 0, 'advertise']]
      )
      assert.deepEqual(
        withdrawals.map((e) => [e.keys, e.peers, e.failures]),
        [[1, 1, 0]]
      )
      await waitFor(() => lookups.length === 2, 5_000, 'two lookup events')
      const [network, cached] = lookups as [LookupEvent, LookupEvent]
      assert.deepEqual(
        [network.source, network.providers, network.peersAsked, network.rounds],
        ['network', 1, 1, 1]
      )
      assert.ok(network.firstProviderMs !== undefined && network.firstProviderMs <= network.durationMs)
      assert.deepEqual([cached.source, cached.providers, cached.durationMs], ['cache', 1, 0])
    } finally {
      await stopAll([a, b])
    }
  })
})
