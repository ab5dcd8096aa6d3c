import assert from 'node:assert/strict'
import { Socket } from 'node:dgram'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { DatagramKind } from '../src/datagram-wire.ts'
import type { Libp2pRouter } from '../src/index.ts'
import { staticBootstrapper } from '../src/index.ts'
import { compareDistance, peerKadId } from '../src/keys.ts'
import { startCluster, startNode, stopAll, waitFor } from './cluster.ts'

/** Open connections of a node to other routers (one per peer). */
const connectionsOf = (node: Libp2pRouter): number => node.libp2p.getPeers().length

/** Whether a node's view holds every other member of a 10-node cluster but `gone`. */
const knowsAllBut = (node: Libp2pRouter, gone: Libp2pRouter): boolean =>
  node.peers().length === 8 && !node.peers().includes(gone.peerId)

/** Keys of three members A, B, C where A and B are each other's nearest and C's nearest is A (nobody's nearest is C). */
async function nobodysNearest(): Promise<[PrivateKey, PrivateKey, PrivateKey]> {
  for (;;) {
    const keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')))
    const kads = keys.map((key) => peerKadId(peerIdFromPrivateKey(key)))
    const nearest = (i: number): number => {
      const [x, y] = [0, 1, 2].filter((j) => j !== i) as [number, number]
      const self = kads[i] as Uint8Array
      return compareDistance(kads[x] as Uint8Array, kads[y] as Uint8Array, self) < 0 ? x : y
    }
    if (nearest(0) === 1 && nearest(1) === 0 && nearest(2) === 0)
      return keys as [PrivateKey, PrivateKey, PrivateKey]
  }
}

/** Counts the lookup request datagrams sent in this process until `stop()`. */
function countLookupDatagrams(): { count: number; stop(): void } {
  const send = Socket.prototype.send
  const counter = {
    count: 0,
    stop: () => {
      Socket.prototype.send = send
    }
  }
  Socket.prototype.send = function (this: Socket, ...args: unknown[]) {
    const bytes = args[0]
    if (bytes instanceof Uint8Array && bytes[0] === 0x6b && bytes[3] === DatagramKind.request) counter.count++
    return Reflect.apply(send, this, args)
  } as typeof send
  return counter
}

async function collect(node: Libp2pRouter, key: string): Promise<string[]> {
  const out: string[] = []
  for await (const provider of node.lookup(key, { count: 10, fresh: true })) out.push(provider.id)
  return out
}

describe('libp2p router in gossip mode', function () {
  this.timeout(60_000)
  let nodes: Libp2pRouter[] = []

  afterEach(async () => {
    await stopAll(nodes)
    nodes = []
  })

  it('knows every member while holding at most peerConnections connections', async () => {
    nodes = await startCluster(16, { membership: 'gossip', peerConnections: 8 })
    // Formed: every node knows the other 15; the plan then closes what is beyond the bound.
    await waitFor(() => nodes.every((n) => connectionsOf(n) <= 8), 20_000, 'connections within the bound')
    for (const node of nodes) assert.equal(node.peers().length, 15)
  })

  it('finds a provider it is not connected to, in one round', async () => {
    nodes = await startCluster(16, { membership: 'gossip', peerConnections: 8 })
    await waitFor(() => nodes.every((n) => connectionsOf(n) <= 8), 20_000, 'connections within the bound')
    const [provider, ...askers] = nodes as [Libp2pRouter, ...Libp2pRouter[]]
    await provider.advertise(['sha256:gossip-mode'])
    const rounds: number[] = []
    for (const asker of askers) {
      asker.events.once('lookup', (e) => rounds.push(e.rounds))
      // The first lookup dials the closest members on demand; the second finds them connected.
      assert.deepEqual(await collect(asker, 'sha256:gossip-mode'), [provider.peerId])
      assert.deepEqual(await collect(asker, 'sha256:gossip-mode'), [provider.peerId])
    }
    assert.deepEqual(await collect(askers[0] as Libp2pRouter, 'sha256:nobody-has-this'), [])
    // One round: the lookup asked the closest members by the view gossip keeps, and no peer an answer named.
    assert.deepEqual(
      rounds,
      askers.map(() => 1)
    )
  })

  it('asks members it has no connection to in a datagram, with no dial', async () => {
    nodes = await startCluster(12, { membership: 'gossip', peerConnections: 4 })
    await waitFor(() => nodes.every((n) => connectionsOf(n) <= 4), 20_000, 'connections within the bound')
    const [provider, asker] = nodes as [Libp2pRouter, Libp2pRouter]
    await provider.advertise(['sha256:by-datagram'])
    asker.libp2p.dial = () => Promise.reject(new Error('this test allows no dial'))
    await Promise.all(asker.libp2p.getConnections().map((c) => c.close()))
    const requests = countLookupDatagrams()
    try {
      assert.deepEqual(await collect(asker, 'sha256:by-datagram'), [provider.peerId])
      assert.deepEqual(await collect(asker, 'sha256:nobody-has-this'), [])
    } finally {
      requests.stop()
    }
    assert.ok(requests.count >= 2, `${requests.count} lookup datagrams sent`)
  })

  it('declares dead a member that vanishes without leaving, connected or not', async () => {
    nodes = await startCluster(10, { membership: 'gossip', peerConnections: 8 })
    const gone = nodes.pop() as Libp2pRouter
    await gone.libp2p.stop() // no "left" rumor, no withdrawal: as a crash
    await waitFor(() => nodes.every((n) => knowsAllBut(n, gone)), 20_000, 'the member gone from every view')
    await gone.close().catch(() => {})
  })

  it('declares dead a crashed member that no other member plans a connection to', async () => {
    // Three members, each planning only its nearest (peerConnections 4): A and B are each other's nearest, C's
    // nearest is A, so only C's own connection to A watches it.
    const [a, b, c] = await nobodysNearest()
    const init = { membership: 'gossip', peerConnections: 4 } as const
    const first = await startNode({ ...init, privateKey: a })
    const seed = staticBootstrapper(first.addresses().map((x) => `${x}/p2p/${first.peerId}`))
    nodes = [
      first,
      ...(await Promise.all([b, c].map((key) => startNode({ ...init, privateKey: key, bootstrapper: seed }))))
    ]
    await waitFor(() => nodes.every((n) => n.peers().length === 2), 20_000, 'three members known to each')
    const gone = nodes.pop() as Libp2pRouter
    await gone.libp2p.stop() // as a crash
    await waitFor(
      () => nodes.every((n) => n.peers().length === 1 && !n.peers().includes(gone.peerId)),
      20_000,
      'the member gone from both views'
    )
    await gone.close().catch(() => {})
  })

  it('removes a member that stops from every view, connected or not', async () => {
    nodes = await startCluster(10, { membership: 'gossip', peerConnections: 8 })
    const gone = nodes.pop() as Libp2pRouter
    await gone.close()
    await waitFor(() => nodes.every((n) => knowsAllBut(n, gone)), 20_000, 'the member gone from every view')
  })

  it('learns the whole membership from one bootstrap peer and is learnt by all', async () => {
    nodes = await startCluster(8, { membership: 'gossip', peerConnections: 8 })
    const seed = nodes[3] as Libp2pRouter
    const late = await startNode({
      membership: 'gossip',
      peerConnections: 8,
      bootstrapper: staticBootstrapper(seed.addresses().map((a) => `${a}/p2p/${seed.peerId}`))
    })
    nodes.push(late)
    await waitFor(() => nodes.every((n) => n.peers().length === 8), 20_000, 'the joiner known by all')
  })
})
