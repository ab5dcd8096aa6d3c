/**
 * The main job (`npm start`): N `kadmirror registry` daemons on 127.0.0.1, as an operator runs them, each with an
 * embedded OCI image-layout store, static bootstrap to the others and its own registry, router and metrics ports.
 * Node 1's store holds generated images; the last node pulls one through its own mirror the way containerd does
 * (HEAD the tag, GET the index and manifests, GET every blob), every blob from a peer and verified, and each answer
 * says which node served it (from the daemon's request log). Then a blob nobody has (a fast 404), and an image node
 * 1 deleted (404 after its withdrawal). Prints the metrics URLs; with `--keep` the daemons run until Ctrl-C.
 * Ctrl-C (or the end) stops the daemons and removes the temporary directory.
 *
 * Usage: node examples/cluster-demo/src/main.ts [--nodes 3] [--layer-mib 1] [--keep]
 */
import { randomFillSync } from 'node:crypto'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildImage, buildIndex, type Descriptor, digestOf, walkImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { allReady, type Daemon, freePorts, startDaemon, stopDaemons } from '@kadmirror/test-support/daemons'

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    'layer-mib': { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false }
  }
})
const count = Number(values.nodes)
const layerBytes = Math.round(Number(values['layer-mib']) * 1024 * 1024)
if (!Number.isInteger(count) || count < 2 || count > 20) {
  console.error(`--nodes must be an integer from 2 to 20, got ${values.nodes}`)
  process.exit(2)
}
if (!Number.isFinite(layerBytes) || layerBytes < 0) {
  console.error(`--layer-mib must be a non-negative number, got ${values['layer-mib']}`)
  process.exit(2)
}

const root = await mkdtemp(join(tmpdir(), 'kadmirror-cluster-'))
const daemons: Daemon[] = []
const ms = (start: number): string => `${(performance.now() - start).toFixed(1)} ms`
let stopping: Promise<void> | undefined
const stop = (): Promise<void> => {
  stopping ??= stopDaemons(daemons).finally(() => rm(root, { recursive: true, force: true }))
  return stopping
}
process.once('SIGINT', () => {
  console.log('\nstopping the daemons…')
  void stop().then(() => process.exit(130))
})

const layer = (): Uint8Array => randomFillSync(new Uint8Array(layerBytes))
const app = buildIndex([
  buildImage({ layers: [layer(), layer()], platform: { architecture: 'amd64', os: 'linux' } }),
  buildImage({ layers: [layer(), layer()], platform: { architecture: 'arm64', os: 'linux' } })
])
const pause = buildImage({ layers: [layer()] })

/** Seeds node 1's layout before its daemon starts (the daemon also notices images added later). */
async function seed(directory: string): Promise<void> {
  const store = await openOciLayoutStore({ directory })
  await store.addImage('registry.example.com/team/app:1.0', app)
  await store.addImage('registry.k8s.io/pause:3.10', pause)
  await store.close()
}

async function startAll(): Promise<void> {
  const ports = await freePorts(count * 3)
  const routerAddress = (i: number): string => `/ip4/127.0.0.1/tcp/${ports[i * 3 + 1]}`
  await seed(join(root, 'node-1', 'layout'))
  const specs = Array.from({ length: count }, (_, i) => ({
    name: `node ${i + 1}`,
    store: join(root, `node-${i + 1}`, 'layout'),
    dataDir: join(root, `node-${i + 1}`, 'data'),
    ports: {
      registry: ports[i * 3] as number,
      router: ports[i * 3 + 1] as number,
      metrics: ports[i * 3 + 2] as number
    },
    peers: Array.from({ length: count }, (_, j) => j)
      .filter((j) => j !== i)
      .map(routerAddress)
  }))
  for (const spec of specs) await mkdir(spec.store, { recursive: true })
  daemons.push(...(await Promise.all(specs.map(startDaemon))))
}

/** Who served the last request for `path` on `asker`, from its request log. */
async function servedBy(asker: Daemon, path: string, seen: number): Promise<string> {
  const deadline = Date.now() + 2000
  for (;;) {
    const line = asker.logs.slice(seen).find((l) => l.msg === 'request' && l.path === path)
    if (line !== undefined) {
      if (line.source !== 'peer') return String(line.source)
      return `from ${daemons.find((d) => d.peerId === line.peer)?.name ?? String(line.peer)}`
    }
    if (Date.now() > deadline) return 'unknown'
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** One request to a mirror, as containerd sends it; the answer and who served it. */
async function pull(asker: Daemon, method: 'GET' | 'HEAD', path: string) {
  const seen = asker.logs.length
  const start = performance.now()
  const res = await fetch(`${asker.registryUrl}${path}`, { method })
  const body = Buffer.from(await res.arrayBuffer())
  const time = ms(start)
  const from = await servedBy(asker, path.split('?')[0] as string, seen)
  return { status: res.status, headers: res.headers, body, from, time }
}

async function pullImage(asker: Daemon): Promise<void> {
  const ns = '?ns=registry.example.com'
  console.log(
    `\n${asker.name} pulls registry.example.com/team/app:1.0 through its mirror at ${asker.registryUrl}:`
  )
  const pullStart = performance.now()
  const head = await pull(asker, 'HEAD', `/v2/team/app/manifests/1.0${ns}`)
  console.log(
    `  HEAD manifests/1.0 → ${head.status} ${head.headers.get('docker-content-digest')} (${head.from}, ${head.time})`
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
}

/** Waits until `asker` finds the tag node 1 advertises (advertising follows the store by a moment). */
async function advertised(asker: Daemon): Promise<void> {
  const deadline = Date.now() + 20_000
  while (
    (
      await fetch(`${asker.registryUrl}/v2/team/app/manifests/1.0?ns=registry.example.com`, {
        method: 'HEAD'
      })
    ).status !== 200
  ) {
    if (Date.now() > deadline) throw new Error('node 1’s image was never found')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function deleteAndMiss(first: Daemon, asker: Daemon): Promise<void> {
  const store = await openOciLayoutStore({ directory: join(root, 'node-1', 'layout') })
  await store.removeImage('registry.k8s.io/pause:3.10')
  await store.close()
  const deadline = Date.now() + 10_000
  let gone = await pull(asker, 'HEAD', '/v2/pause/manifests/3.10?ns=registry.k8s.io')
  while (gone.status !== 404 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    gone = await pull(asker, 'HEAD', '/v2/pause/manifests/3.10?ns=registry.k8s.io')
  }
  console.log(
    `\n${first.name} deleted registry.k8s.io/pause:3.10 and withdrew its keys; ${asker.name}: HEAD pause:3.10 → ${gone.status} (${gone.time})`
  )
}

try {
  const start = performance.now()
  await startAll()
  await allReady(daemons)
  console.log(`${count} kadmirror daemons on 127.0.0.1 know each other (${ms(start)}):`)
  for (const d of daemons)
    console.log(`  ${d.name}  ${d.peerId}  registry ${d.registryUrl}  metrics ${d.metricsUrl}/metrics`)
  const first = daemons[0] as Daemon
  const asker = daemons[daemons.length - 1] as Daemon
  await advertised(asker)
  await pullImage(asker)
  const miss = await pull(asker, 'GET', `/v2/team/app/blobs/sha256:${'0'.repeat(64)}?ns=registry.example.com`)
  console.log(
    `\n${asker.name} asks for a blob nobody has → ${miss.status} ${miss.body.toString().trim()} (${miss.time}); containerd would now go upstream`
  )
  await deleteAndMiss(first, asker)
  console.log(`\ndebug page: ${asker.metricsUrl}/debug/web/   metrics: ${asker.metricsUrl}/metrics`)
  if (values.keep) {
    console.log('the daemons keep running; Ctrl-C stops them and removes their files')
    await new Promise(() => {})
  }
} catch (err) {
  console.error(`cluster demo: ${(err as Error).message}`)
  process.exitCode = 1
} finally {
  if (!values.keep) await stop()
}
