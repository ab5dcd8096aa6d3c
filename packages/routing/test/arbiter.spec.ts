import assert from 'node:assert/strict'
import { pino } from 'pino'
import { ClaimTable } from '../src/claim-table.ts'
import { CLAIM_PROTOCOL, keyToCid, type Libp2pRouter } from '../src/index.ts'
import type { KadMessage } from '../src/kad-message.ts'
import { compareDistance, keyKadId, peerKadId } from '../src/keys.ts'
import { serveRequestStream } from '../src/lookup-server.ts'
import { startCluster, stopAll, waitFor } from './cluster.ts'

const holder = (id: string) => ({ id, idBytes: new Uint8Array([1]), addresses: [] })

describe('ClaimTable', () => {
  const table = (now: () => number, maxEntries = 10) =>
    new ClaimTable({ holdMs: 100, maxEntries, maxWaiting: 2, now })

  it('holds the first claim for holdMs, then takes a new one', () => {
    let now = 0
    const claims = table(() => now)
    assert.equal(claims.claim('k', holder('a')).holder.id, 'a')
    now = 99
    assert.equal(claims.claim('k', holder('b')).holder.id, 'a')
    now = 100
    assert.equal(claims.stateOf('k'), undefined)
    assert.equal(claims.claim('k', holder('b')).holder.id, 'b')
  })

  it('does not extend a claim its holder makes again', () => {
    let now = 0
    const claims = table(() => now)
    claims.claim('k', holder('a'))
    now = 60
    claims.claim('k', holder('a'))
    now = 100
    assert.equal(claims.claim('k', holder('b')).holder.id, 'b')
  })

  it('names to each later claimer the ones before it, the earliest maxWaiting, never itself', () => {
    const claims = table(() => 0)
    const ids = (state: { waiting: { id: string }[] }) => state.waiting.map((w) => w.id)
    claims.claim('k', holder('a'))
    assert.deepEqual(ids(claims.claim('k', holder('b'))), [])
    assert.deepEqual(ids(claims.claim('k', holder('c'))), ['b'])
    assert.deepEqual(ids(claims.claim('k', holder('d'))), ['b', 'c'])
    assert.deepEqual(ids(claims.claim('k', holder('b'))), ['c'])
    assert.deepEqual(ids(claims.claim('k', holder('a'))), ['b', 'c'])
    assert.deepEqual(ids(claims.stateOf('k') as { waiting: { id: string }[] }), ['b', 'c'])
  })

  it('drops the oldest claim past maxEntries', () => {
    const claims = table(() => 0, 2)
    claims.claim('k1', holder('a'))
    claims.claim('k2', holder('a'))
    claims.claim('k3', holder('b'))
    assert.equal(claims.size, 2)
    assert.equal(claims.stateOf('k1'), undefined)
    assert.equal(claims.stateOf('k3')?.holder.id, 'b')
  })
})

describe('claims on a libp2p cluster', function () {
  this.timeout(60_000)
  let nodes: Libp2pRouter[] = []

  afterEach(async () => {
    await stopAll(nodes)
    nodes = []
  })

  /** The nodes ordered by closeness to `key`, closest first. */
  const byCloseness = (key: string): Libp2pRouter[] => {
    const target = keyKadId(keyToCid(key))
    return [...nodes].sort((a, b) =>
      compareDistance(peerKadId(a.libp2p.peerId), peerKadId(b.libp2p.peerId), target)
    )
  }

  it('are decided by the node closest to the key: it wins its own claim at once', async () => {
    nodes = await startCluster(4)
    const key = 'sha256:claimed-by-its-arbiter'
    const [arbiter, ...others] = byCloseness(key) as [Libp2pRouter, ...Libp2pRouter[]]
    // Nobody else could answer: the arbiter decides its own claim without asking.
    await Promise.all(others.map((n) => n.libp2p.unhandle(CLAIM_PROTOCOL)))
    assert.deepEqual(await arbiter.claim?.(key), { won: true })
    const answer = await others[0]?.claim?.(key)
    assert.equal(answer?.won === false ? answer.holder?.id : undefined, arbiter.peerId)
  })

  it('go to the next closest node when the closest does not answer them, and every node agrees', async () => {
    nodes = await startCluster(5)
    const key = 'sha256:arbiter-not-answering'
    const [silent, , first, second] = byCloseness(key) as [Libp2pRouter, ...Libp2pRouter[]]
    await silent.libp2p.unhandle(CLAIM_PROTOCOL)
    assert.deepEqual(await first?.claim?.(key), { won: true })
    const answer = await second?.claim?.(key)
    assert.equal(answer?.won === false ? answer.holder?.id : undefined, first?.peerId)
  })

  const lies: Array<[string, (m: KadMessage) => KadMessage]> = [
    [
      'names a malformed holder',
      (m) => ({ ...m, providers: [{ id: Uint8Array.from([1, 2, 3]), multiaddrs: [] }] })
    ],
    ['names no holder of a claimed key', (m) => ({ ...m, providers: [] })]
  ]
  for (const [lie, answer] of lies) {
    it(`go to the next closest node when the closest ${lie}`, async () => {
      nodes = await startCluster(4)
      const key = `sha256:arbiter-lying-${lie}`
      const [liar, second, claimer] = byCloseness(key) as [Libp2pRouter, Libp2pRouter, Libp2pRouter]
      await liar.libp2p.unhandle(CLAIM_PROTOCOL)
      await liar.libp2p.handle(CLAIM_PROTOCOL, (stream) =>
        serveRequestStream(stream, answer, pino({ level: 'silent' }))
      )
      assert.deepEqual(await claimer.claim?.(key), { won: true })
      const again = await second.claim?.(key)
      assert.equal(again?.won === false ? again.holder?.id : undefined, claimer.peerId)
    })
  }

  it('reach an arbiter the claimer is not connected to (gossip mode)', async () => {
    nodes = await startCluster(12, { membership: 'gossip', peerConnections: 4 })
    await waitFor(
      () => nodes.every((n) => n.peers().length === 11 && n.libp2p.getPeers().length <= 4),
      30_000,
      'a formed gossip cluster within its connection bound'
    )
    for (let i = 0; i < 20; i++) {
      const key = `sha256:gossip-claim-${i}`
      const [arbiter, ...rest] = byCloseness(key) as [Libp2pRouter, ...Libp2pRouter[]]
      const far = rest.find((n) => !n.libp2p.getPeers().some((p) => p.equals(arbiter.libp2p.peerId)))
      if (far === undefined) continue
      assert.deepEqual(await far.claim?.(key), { won: true })
      const again = await arbiter.claim?.(key)
      assert.equal(again?.won === false ? again.holder?.id : undefined, far.peerId)
      return
    }
    assert.fail('no key whose arbiter a node was not connected to')
  })
})
