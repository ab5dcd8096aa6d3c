/**
 * The main job (`npm start`): a local multi-node mirror on 127.0.0.1. Each node has an embedded OCI
 * image-layout store, a libp2p router on the Spegel-compatible DHT, an advertiser, and the HTTP mirror
 * (`@kadmirror/mirror`). Node 1 holds generated images; the last node pulls one through its own mirror the
 * way containerd does (HEAD the tag, GET the index and manifests, GET every blob), and each answer says which
 * node served it. Then a blob nobody has (a fast 404), and an image node 1 deleted (404 after withdrawal).
 *
 * Usage: node examples/cluster-demo/src/main.ts [--nodes 3] [--layer-mib 1]
 */
import { randomFillSync } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { listenMirror, type MirrorHandler, type MirrorListener, type ResponseEvent } from '@kadmirror/mirror'
import { buildImage, buildIndex, type Descriptor, digestOf, walkImage } from '@kadmirror/oci'
import {
  type Advertiser,
  createAdvertiser,
  createLibp2pRouter,
  type Libp2pRouter,
  staticBootstrapper
} from '@kadmirror/routing'
import { type OciLayoutStore, openOciLayoutStore } from '@kadmirror/store'
import { Agent } from 'undici'

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
  listener: MirrorListener
  mirror: MirrorHandler
  url: string
}

const root = await mkdtemp(join(tmpdir(), 'kadmirror-cluster-'))
const nodes: Node[] = []
const ms = (start: number): string => `${(performance.now() - start).toFixed(1)} ms`

async function startNode(index: number, seed?: string[]): Promise<Node> {
  const store = await openOciLayoutStore({ directory: join(root, `node-${index + 1}`) })
  // The mirror listens first: the router announces its port to peers; the handler is served once the router exists.
  const listener = await listenMirror({ port: 0, host: '127.0.0.1' })
  const router = await createLibp2pRouter({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    registryPort: listener.port,
    dataDir: join(root, `node-${index + 1}`, 'router'),
    ...(seed === undefined ? {} : { bootstrapper: staticBootstrapper(seed) })
  })
  const advertiser = createAdvertiser({ store, router })
  await advertiser.start()
  const mirror = listener.serve({ store, router })
  return { name: `node ${index + 1}`, store, router, advertiser, listener, mirror, url: listener.url }
}

const client = new Agent()

/** One request to a mirror, as containerd sends it; the answer with who served it. */
async function pull(node: Node, method: 'GET' | 'HEAD', path: string) {
  const served = once(node.mirror.events, 'response') as Promise<[ResponseEvent]>
  const start = performance.now()
  const res = await client.request({ origin: node.url, path, method })
  const body = Buffer.from(await res.body.arrayBuffer())
  const [event] = await served
  const from =
    event.source === 'peer'
      ? `from ${nodeName(event.peer ?? '')}`
      : event.source === 'local'
        ? 'local'
        : event.source
  return { status: res.statusCode, headers: res.headers, body, from, time: ms(start) }
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

  const ns = '?ns=registry.example.com'
  console.log(`\n${asker.name} pulls registry.example.com/team/app:1.0 through its mirror at ${asker.url}:`)
  const pullStart = performance.now()
  const head = await pull(asker, 'HEAD', `/v2/team/app/manifests/1.0${ns}`)
  console.log(
    `  HEAD manifests/1.0 → ${head.status} ${head.headers['docker-content-digest']} (${head.from}, ${head.time})`
  )
  let bytes = 0
  const load = async (descriptor: Descriptor) => {
    const res = await pull(asker, 'GET', `/v2/team/app/manifests/${descriptor.digest}${ns}`)
    console.log(
      `  GET manifests/${descriptor.digest.slice(0, 19)}… → ${res.status} (${res.from}, ${res.time})`
    )
    bytes += res.body.byteLength
    return res.status === 200 ? res.body : undefined
  }
  let verified = 0
  for await (const entry of walkImage(app.root, load)) {
    if (entry.relation === 'manifest' || entry.relation === 'root') continue
    const res = await pull(asker, 'GET', `/v2/team/app/blobs/${entry.descriptor.digest}${ns}`)
    const ok = res.status === 200 && digestOf(res.body) === entry.descriptor.digest
    if (ok) verified++
    bytes += res.body.byteLength
    console.log(
      `  GET blobs/${entry.descriptor.digest.slice(0, 19)}… → ${res.status} ${res.body.byteLength} bytes ${ok ? 'verified' : 'WRONG'} (${res.from}, ${res.time})`
    )
  }
  const seconds = (performance.now() - pullStart) / 1000
  console.log(
    `  pulled ${(bytes / 1024 / 1024).toFixed(1)} MiB in ${(seconds * 1000).toFixed(0)} ms, ${verified} blobs verified`
  )

  const unknown = `sha256:${'0'.repeat(64)}`
  const miss = await pull(asker, 'GET', `/v2/team/app/blobs/${unknown}${ns}`)
  console.log(
    `\n${asker.name} asks for a blob nobody has → ${miss.status} ${miss.body.toString().trim()} (${miss.time}); containerd would now go upstream`
  )

  await first.store.removeImage('registry.k8s.io/pause:3.10')
  await new Promise((resolve) => setTimeout(resolve, 200))
  const gone = await pull(asker, 'HEAD', '/v2/pause/manifests/3.10?ns=registry.k8s.io')
  console.log(
    `\n${first.name} deleted registry.k8s.io/pause:3.10 and withdrew its keys; ${asker.name}: HEAD pause:3.10 → ${gone.status} (${gone.time})`
  )
} finally {
  await Promise.all(
    nodes.map(async (n) => {
      await n.listener.close()
      await n.advertiser.close()
      await n.router.close()
      await n.store.close()
    })
  )
  await client.close()
  await rm(root, { recursive: true, force: true })
}
