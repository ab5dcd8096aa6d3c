/**
 * The main job for now (`npm start`): a local cluster of kadmirror nodes on 127.0.0.1. Each node has an
 * embedded OCI image-layout store, a libp2p router on the Spegel-compatible DHT, and an advertiser. Node 1
 * holds generated images; the last node looks up their tags and digests (a hit names node 1 and its registry
 * URL), looks up a digest nobody has (a miss), then node 1 deletes an image and the lookup no longer finds it.
 * The HTTP mirror that serves the bytes comes with @kadmirror/mirror.
 *
 * Usage: node examples/cluster-demo/src/main.ts [--nodes 3] [--layer-mib 1]
 */
import { randomFillSync } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildImage, buildIndex } from '@kadmirror/oci'
import {
  type Advertiser,
  createAdvertiser,
  createLibp2pRouter,
  type Libp2pRouter,
  staticBootstrapper
} from '@kadmirror/routing'
import { type OciLayoutStore, openOciLayoutStore } from '@kadmirror/store'

const { values } = parseArgs({
  options: { nodes: { type: 'string', default: '3' }, 'layer-mib': { type: 'string', default: '1' } }
})
const count = Number(values.nodes)
const layerBytes = Math.round(Number(values['layer-mib']) * 1024 * 1024)
if (!Number.isInteger(count) || count < 2 || count > 50) {
  console.error(`--nodes must be an integer from 2 to 50, got ${values.nodes}`)
  process.exit(2)
}
if (!Number.isFinite(layerBytes) || layerBytes < 0) {
  console.error(`--layer-mib must be a non-negative number, got ${values['layer-mib']}`)
  process.exit(2)
}

interface Node {
  name: string
  store: OciLayoutStore
  router: Libp2pRouter
  advertiser: Advertiser
}

const root = await mkdtemp(join(tmpdir(), 'kadmirror-cluster-'))
const nodes: Node[] = []
const ms = (start: number): string => `${(performance.now() - start).toFixed(1)} ms`

async function startNode(index: number, seed?: string[]): Promise<Node> {
  const store = await openOciLayoutStore({ directory: join(root, `node-${index + 1}`) })
  const router = await createLibp2pRouter({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    registryPort: 5000 + index,
    dataDir: join(root, `node-${index + 1}`, 'router'),
    ...(seed === undefined ? {} : { bootstrapper: staticBootstrapper(seed) })
  })
  const advertiser = createAdvertiser({ store, router })
  await advertiser.start()
  return { name: `node ${index + 1}`, store, router, advertiser }
}

async function lookup(router: Libp2pRouter, key: string): Promise<string> {
  const start = performance.now()
  const found: string[] = []
  for await (const peer of router.lookup(key)) found.push(`${nodeName(peer.id)} at ${peer.registryUrl}`)
  return `${found.length === 0 ? 'nobody' : found.join(', ')} (${ms(start)})`
}

function nodeName(peerId: string): string {
  return nodes.find((n) => n.router.peerId === peerId)?.name ?? peerId
}

try {
  const first = await startNode(0)
  nodes.push(first)
  const seed = first.router.addresses().map((a) => `${a}/p2p/${first.router.peerId}`)
  nodes.push(...(await Promise.all(Array.from({ length: count - 1 }, (_, i) => startNode(i + 1, seed)))))
  const start = performance.now()
  while (!nodes.every((n) => n.router.peers().length === count - 1))
    await new Promise((r) => setTimeout(r, 20))
  console.log(`${count} nodes on 127.0.0.1 know each other (${ms(start)}):`)
  for (const node of nodes)
    console.log(`  ${node.name}  ${node.router.peerId}  ${node.router.addresses().join(' ')}`)

  const layer = (): Uint8Array => randomFillSync(new Uint8Array(layerBytes))
  const app = buildIndex([
    buildImage({ layers: [layer(), layer()], platform: { architecture: 'amd64', os: 'linux' } }),
    buildImage({ layers: [layer(), layer()], platform: { architecture: 'arm64', os: 'linux' } })
  ])
  const pause = buildImage({ layers: [layer()] })
  await first.store.addImage('registry.example.com/team/app:1.0', app)
  await first.store.addImage('registry.k8s.io/pause:3.10', pause)
  const asker = nodes[nodes.length - 1] as Node
  await new Promise((resolve) => setTimeout(resolve, 200)) // the advertiser batches store events for 50 ms
  console.log(`\n${first.name} added 2 images; it advertises ${first.advertiser.size()} keys:`)
  for (const [registry, n] of first.advertiser.counts()) console.log(`  ${registry.padEnd(22)} ${n} keys`)

  console.log(`\n${asker.name} looks up:`)
  console.log(
    `  tag registry.example.com/team/app:1.0 → ${await lookup(asker.router, 'registry.example.com/team/app:1.0')}`
  )
  for (const digest of [...app.blobs.keys()].slice(0, 3))
    console.log(`  ${digest.slice(0, 19)}… → ${await lookup(asker.router, digest)}`)
  const unknown = `sha256:${'0'.repeat(64)}`
  console.log(`  ${unknown.slice(0, 19)}… (nobody has it) → ${await lookup(asker.router, unknown)}`)

  await first.store.removeImage('registry.k8s.io/pause:3.10')
  await new Promise((resolve) => setTimeout(resolve, 200))
  console.log(
    `\n${first.name} deleted registry.k8s.io/pause:3.10 and withdrew its keys; ${asker.name} looks up again:`
  )
  console.log(
    `  tag registry.k8s.io/pause:3.10 → ${await lookup(asker.router, 'registry.k8s.io/pause:3.10')}`
  )
} finally {
  await Promise.all(
    nodes.map(async (n) => {
      await n.advertiser.close()
      await n.router.close()
      await n.store.close()
    })
  )
  await rm(root, { recursive: true, force: true })
}
