/**
 * A process hosting several kadmirror nodes for bench/mirror (`createNode()` on a memory store each), driven over
 * IPC by the parent: `start` (with a seed), `peers`, `images` (add small images to random hosted nodes; answers
 * their layer digests), `stop`. Spreading a cluster over several such processes keeps one event loop from
 * answering for every node.
 */
import { randomFillSync } from 'node:crypto'
import { createNode, type KadmirrorNode } from '@kadmirror/daemon'
import { buildImage, type Digest } from '@kadmirror/oci'
import { staticBootstrapper } from '@kadmirror/routing'
import { createMemoryStore, type MemoryStore } from '@kadmirror/store'

interface HostedNode {
  node: KadmirrorNode
  router: KadmirrorNode['router']
  store: MemoryStore
}

/** Messages the parent sends. */
export type HostRequest =
  | { op: 'start'; id: number; count: number; seed?: string[] }
  | { op: 'peers'; id: number }
  | { op: 'images'; id: number; count: number; layerBytes: number }
  | { op: 'stop'; id: number }

const nodes: HostedNode[] = []

/** One node built by the daemon's `createNode()` on a memory store (no metrics port). */
async function startNode(seed?: string[]): Promise<HostedNode> {
  const store = createMemoryStore()
  const node = await createNode({
    store: { kind: 'custom', store },
    registry: { host: '127.0.0.1', port: 0 },
    metrics: false,
    router: {
      listen: ['/ip4/127.0.0.1/tcp/0'],
      allowLoopback: true,
      ...(seed === undefined ? {} : { bootstrapper: staticBootstrapper(seed) })
    }
  })
  return { node, router: node.router, store }
}

async function handle(message: HostRequest): Promise<unknown> {
  switch (message.op) {
    case 'start': {
      const started = await Promise.all(Array.from({ length: message.count }, () => startNode(message.seed)))
      nodes.push(...started)
      return { seeds: started.map((n) => `${n.router.addresses()[0]}/p2p/${n.router.peerId}`) }
    }
    case 'peers':
      return { peers: nodes.map((n) => n.router.peers().length) }
    case 'images': {
      const layers: Digest[] = []
      for (let i = 0; i < message.count; i++) {
        const bytes = randomFillSync(new Uint8Array(message.layerBytes))
        const image = buildImage({ layers: [bytes] })
        const owner = nodes[Math.floor(Math.random() * nodes.length)] as HostedNode
        await owner.store.addImage(`bench.local/hit/n${process.pid}-${i}:1`, image)
        // At once, so the answer comes after the records are stored (the node's advertiser follows 50 ms later).
        await owner.router.advertise([...image.blobs.keys()])
        layers.push([...image.blobs.entries()].find(([, b]) => b === bytes)?.[0] as Digest)
      }
      return { layers }
    }
    case 'stop':
      await Promise.all(
        nodes.map(async (n) => {
          await n.node.close()
          await n.store.close()
        })
      )
      return {}
  }
}

process.on('message', (message: HostRequest) => {
  handle(message).then(
    (result) => process.send?.({ id: message.id, ...(result as object) }),
    (err: unknown) => process.send?.({ id: message.id, error: String(err) })
  )
})
process.send?.({ ready: true })
