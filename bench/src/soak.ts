/**
 * bench/soak: a 10-node loopback cluster of `kadmirror registry` daemons (OCI-layout stores, `--allow-loopback`)
 * under mixed load for a while (default 20 minutes): pulls of images by tag through random nodes (the manifest and
 * every blob, each verified against its digest), misses, a lying peer (serves zeros for the blobs it advertises), a
 * trickling peer (one byte every 100 ms), images added and removed in the nodes' layouts, and churn (a node of the
 * second half restarted every minute). Every 10 s it samples the resident memory and open file descriptors of the
 * nodes that are never restarted, and reports their slope per hour (least squares over the second half of the run,
 * after warm-up). Targets: RSS and descriptors flat, zero wrong bytes, zero failed pulls (a 404 is a fallback to
 * upstream, which would have served: counted, not a failure; a cut body, a 5xx or wrong bytes is a failure).
 *
 * Usage: npm run bench -- soak [--minutes 20] [--nodes 10] [--workers 4] (not part of the default set: it is long)
 */
import { createHash, randomFillSync } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type BuiltImage, buildImage } from '@kadmirror/oci'
import { createLibp2pRouter, type Libp2pRouter, staticBootstrapper } from '@kadmirror/routing'
import { openOciLayoutStore } from '@kadmirror/store'
import {
  allReady,
  bundledCli,
  type Daemon,
  type DaemonSpec,
  freePorts,
  startDaemon,
  stopDaemons
} from '@kadmirror/test-support/daemons'
import { type RogueRegistry, startRogueRegistry, zeros } from '@kadmirror/test-support/rogue-registry'
import { Agent } from 'undici'
import { printTable, type Row, writeResults } from './report.ts'

const NS = 'soak.local'
const SAMPLE_EVERY_MS = 10_000
const CHURN_EVERY_MS = 60_000
const CONTENT_EVERY_MS = 30_000
/** Shorter runs report slopes but do not judge them: warm-up dominates. */
const MIN_JUDGED_MS = 10 * 60_000

interface Counters {
  pulls: number
  pullsFromPeers: number
  fallbacks: number
  failed: number
  wrongBytes: number
  misses: number
  missMs: number[]
  bytesVerified: number
  restarts: number
  /** Pulls whose node was restarted while they ran: containerd finds its mirror gone and goes upstream. */
  nodeDown: number
  failures: string[]
}

/**
 * A daemon's resident set in MiB and open descriptors (from /proc), and its V8 heap in use in MiB (from its
 * `/metrics`: growth there is JavaScript holding on to objects; growth of RSS alone is memory V8 or the allocator
 * keeps).
 */
async function sample(daemon: Daemon): Promise<{ rssMiB: number; fds: number; heapMiB: number }> {
  const pid = daemon.process.pid as number
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const rssMiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) / 1024
  const metrics = await (await fetch(`${daemon.metricsUrl}/metrics`)).text()
  const heapMiB = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1] ?? Number.NaN) / 2 ** 20
  return { rssMiB, fds: (await readdir(`/proc/${pid}/fd`)).length, heapMiB }
}

/** Least-squares slope of `values` over `timesS`, per hour. */
function slopePerHour(timesS: number[], values: number[]): number {
  const n = values.length
  if (n < 2) return Number.NaN
  const mt = timesS.reduce((a, b) => a + b, 0) / n
  const mv = values.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += ((timesS[i] as number) - mt) * ((values[i] as number) - mv)
    den += ((timesS[i] as number) - mt) ** 2
  }
  return den === 0 ? 0 : (num / den) * 3600
}

const sha256 = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** An image of 3 layers of 64 KiB – 2 MiB. */
function randomImage(): BuiltImage {
  return buildImage({
    layers: Array.from({ length: 3 }, () =>
      randomFillSync(new Uint8Array(64 * 1024 + Math.floor(Math.random() * 2 * 1024 * 1024)))
    )
  })
}

/** A misbehaving peer on the DHT: it advertises `digests` and answers every blob request with `serve`. */
async function startRogue(
  bootstrap: string,
  digests: Map<string, number>,
  serve: (res: ServerResponse, size: number) => void
): Promise<{ router: Libp2pRouter; registry: RogueRegistry }> {
  const registry = await startRogueRegistry(digests, serve)
  const router = await createLibp2pRouter({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    registryPort: registry.port,
    bootstrapper: staticBootstrapper([bootstrap])
  })
  await router.advertise([...digests.keys()])
  return { router, registry }
}

/** Pulls `tag` through `daemon` as containerd would: the manifest, then every blob, each checked. */
async function pull(
  client: Agent,
  daemon: Daemon,
  image: BuiltImage,
  tag: string,
  counters: Counters,
  wasRestarted: () => boolean
): Promise<void> {
  counters.pulls++
  let fellBack = false
  let fromPeer = false
  const get = async (path: string, expected: string) => {
    const res = await client.request({ origin: daemon.registryUrl, path, method: 'GET' })
    const chunks: Buffer[] = []
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) chunks.push(chunk)
    } catch (err) {
      throw new Error(`${path}: body cut (${(err as Error).message})`)
    }
    if (res.statusCode === 404) {
      fellBack = true
      return
    }
    if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode}`)
    const body = Buffer.concat(chunks)
    if (sha256(body) !== expected) {
      counters.wrongBytes++
      throw new Error(`${path}: wrong bytes`)
    }
    counters.bytesVerified += body.byteLength
  }
  try {
    await get(`/v2/soak/app/manifests/${tag}?ns=${NS}`, image.root.digest)
    for (const digest of image.blobs.keys())
      if (digest !== image.root.digest) {
        const before: boolean = fellBack
        await get(`/v2/soak/app/blobs/${digest}?ns=${NS}`, digest)
        if (fellBack === before) fromPeer = true
      }
    if (fellBack) counters.fallbacks++
    if (fromPeer) counters.pullsFromPeers++
  } catch (err) {
    if (wasRestarted()) {
      counters.nodeDown++
      return
    }
    counters.failed++
    if (counters.failures.length < 20) counters.failures.push((err as Error).message)
  }
}

/** Times a miss (a digest no one has) through `daemon`. */
async function miss(client: Agent, daemon: Daemon, counters: Counters): Promise<void> {
  const started = performance.now()
  const digest = sha256(randomFillSync(new Uint8Array(16)))
  const res = await client.request({
    origin: daemon.registryUrl,
    path: `/v2/soak/app/blobs/${digest}?ns=${NS}`,
    method: 'GET'
  })
  await res.body.dump()
  counters.misses++
  counters.missMs.push(performance.now() - started)
  if (res.statusCode !== 404) {
    counters.failed++
    counters.failures.push(`miss answered ${res.statusCode}`)
  }
}

/** Runs the soak; resolves true when every target is met. */
export async function benchSoak(args: string[]): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: {
      minutes: { type: 'string', default: '20' },
      nodes: { type: 'string', default: '10' },
      workers: { type: 'string', default: '4' }
    }
  })
  const durationMs = Number(values.minutes) * 60_000
  const size = Number(values.nodes)
  const root = await mkdtemp(join(tmpdir(), 'kadmirror-soak-'))
  const client = new Agent({ connections: 16, keepAliveTimeout: 5_000 })
  const counters: Counters = {
    pulls: 0,
    pullsFromPeers: 0,
    fallbacks: 0,
    failed: 0,
    wrongBytes: 0,
    misses: 0,
    missMs: [],
    bytesVerified: 0,
    restarts: 0,
    nodeDown: 0,
    failures: []
  }
  const daemons: Daemon[] = []
  const rogues: { router: Libp2pRouter; registry: RogueRegistry }[] = []
  try {
    // Images, each held by one or two nodes (tags soak.local/soak/app:<i>).
    const images = Array.from({ length: 12 }, randomImage)
    const holders = images.map((_, i) => [i % size, (i * 7 + 3) % size])
    for (let node = 0; node < size; node++) {
      const store = await openOciLayoutStore({
        directory: join(root, `node-${node}`, 'layout'),
        create: true
      })
      for (const [i, image] of images.entries())
        if ((holders[i] as number[]).includes(node) && (i % 3 !== 0 || node === holders[i]?.[0]))
          await store.addImage(`${NS}/soak/app:${i}`, image)
      await store.close()
    }
    const ports = await freePorts(size * 3)
    const cli = await bundledCli()
    const spec = (i: number): DaemonSpec => ({
      cli,
      name: `node ${i}`,
      store: join(root, `node-${i}`, 'layout'),
      dataDir: join(root, `node-${i}`, 'data'),
      ports: {
        registry: ports[i * 3] as number,
        router: ports[i * 3 + 1] as number,
        metrics: ports[i * 3 + 2] as number
      },
      peers: [0, 1, 2].filter((j) => j !== i).map((j) => `/ip4/127.0.0.1/tcp/${ports[j * 3 + 1]}`),
      extraArgs: ['--log-level=WARN']
    })
    for (let i = 0; i < size; i++) daemons.push(await startDaemon(spec(i)))
    await allReady(daemons)
    // The misbehaving peers advertise the blobs of the first four images.
    const rogueBlobs = new Map<string, number>()
    for (const image of images.slice(0, 4))
      for (const [digest, bytes] of image.blobs)
        if (digest !== image.root.digest) rogueBlobs.set(digest, bytes.byteLength)
    const seed = `/ip4/127.0.0.1/tcp/${ports[1]}`
    rogues.push(await startRogue(seed, rogueBlobs, zeros))
    rogues.push(
      await startRogue(seed, rogueBlobs, (res) => {
        const timer = setInterval(() => res.write(Buffer.alloc(1)), 100)
        res.once('close', () => clearInterval(timer))
      })
    )
    await new Promise((resolve) => setTimeout(resolve, 3000))

    const stable = daemons.slice(0, Math.ceil(size / 2))
    const started = performance.now()
    const deadline = started + durationMs
    const samples: { t: number; node: number; rssMiB: number; fds: number; heapMiB: number }[] = []
    const sampler = setInterval(() => {
      const t = (performance.now() - started) / 1000
      for (const [node, daemon] of stable.entries())
        void sample(daemon).then(
          (s) => samples.push({ t, node, ...s }),
          () => {}
        )
    }, SAMPLE_EVERY_MS)
    const restarting = new Set<string>()
    const restartsOf = new Map<string, number>()
    let lastChurn = started
    let lastContent = started
    const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)] as T
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline) {
        const live = daemons.filter((d) => d.process.exitCode === null && !restarting.has(d.name))
        const daemon = pick(live)
        const generation = restartsOf.get(daemon.name) ?? 0
        const wasRestarted = () =>
          restarting.has(daemon.name) || (restartsOf.get(daemon.name) ?? 0) !== generation
        if (Math.random() < 0.2) await miss(client, daemon, counters).catch(() => {})
        else {
          const i = Math.floor(Math.random() * images.length)
          await pull(client, daemon, images[i] as BuiltImage, String(i), counters, wasRestarted)
        }
      }
    }
    const chores = async (): Promise<void> => {
      while (performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        const now = performance.now()
        if (now - lastChurn >= CHURN_EVERY_MS) {
          lastChurn = now
          const i = Math.ceil(size / 2) + Math.floor(Math.random() * Math.floor(size / 2))
          const name = (daemons[i] as Daemon).name
          restarting.add(name)
          await stopDaemons([daemons[i] as Daemon])
          daemons[i] = await startDaemon(spec(i))
          restartsOf.set(name, (restartsOf.get(name) ?? 0) + 1)
          restarting.delete(name)
          counters.restarts++
        }
        if (now - lastContent >= CONTENT_EVERY_MS) {
          lastContent = now
          // An image appears on one node and leaves another (through the layout, as skopeo or umoci would do it).
          const i = Math.floor(Math.random() * images.length)
          const node = Math.floor(Math.random() * size)
          const store = await openOciLayoutStore({ directory: join(root, `node-${node}`, 'layout') })
          if (Math.random() < 0.5) await store.addImage(`${NS}/soak/app:${i}`, images[i] as BuiltImage)
          else if (!(holders[i] as number[]).includes(node)) await store.removeImage(`${NS}/soak/app:${i}`)
          await store.close()
        }
      }
    }
    await Promise.all([...Array.from({ length: Number(values.workers) }, worker), chores()])
    clearInterval(sampler)

    const half = durationMs / 2000
    const rows: Row[] = stable.map((_, node) => {
      const mine = samples.filter((s) => s.node === node && s.t >= half)
      const all = samples.filter((s) => s.node === node)
      return {
        node: `node ${node}`,
        'RSS start MiB': all[0]?.rssMiB ?? Number.NaN,
        'RSS end MiB': all.at(-1)?.rssMiB ?? Number.NaN,
        'RSS MiB/h': slopePerHour(
          mine.map((s) => s.t),
          mine.map((s) => s.rssMiB)
        ),
        'heap end MiB': all.at(-1)?.heapMiB ?? Number.NaN,
        'heap MiB/h': slopePerHour(
          mine.map((s) => s.t),
          mine.map((s) => s.heapMiB)
        ),
        'fds start': all[0]?.fds ?? Number.NaN,
        'fds end': all.at(-1)?.fds ?? Number.NaN,
        'fds/h': slopePerHour(
          mine.map((s) => s.t),
          mine.map((s) => s.fds)
        )
      }
    })
    printTable(`bench/soak: ${values.minutes} min, ${size} nodes (the never-restarted half)`, rows)
    const sorted = [...counters.missMs].sort((a, b) => a - b)
    const totals: Row = {
      pulls: counters.pulls,
      'with a blob from the mirror': counters.pullsFromPeers,
      'fell back (404)': counters.fallbacks,
      'node restarted meanwhile': counters.nodeDown,
      failed: counters.failed,
      'wrong bytes': counters.wrongBytes,
      misses: counters.misses,
      'miss p99 ms': sorted[Math.floor(sorted.length * 0.99)] ?? Number.NaN,
      'MiB verified': counters.bytesVerified / 2 ** 20,
      restarts: counters.restarts
    }
    printTable('bench/soak: totals', [totals])
    for (const failure of counters.failures) console.log(`  failure: ${failure}`)
    const flat = rows.every((r) => Math.abs(r['fds/h'] as number) < 60)
    const judged = durationMs >= MIN_JUDGED_MS
    const checks: Record<string, boolean> = {
      'zero wrong bytes': counters.wrongBytes === 0,
      'zero failed pulls': counters.failed === 0
    }
    if (judged) checks['descriptors flat (|slope| < 60/h)'] = flat
    for (const [name, ok] of Object.entries(checks)) console.log(`target ${name}: ${ok ? 'met' : 'NOT met'}`)
    if (!judged)
      console.log('target descriptors flat: not judged (a slope needs a run of 10 minutes or more)')
    console.log(
      `wrote ${await writeResults('soak', { rows, totals, checks, samples, failures: counters.failures })}`
    )
    return Object.values(checks).every(Boolean)
  } finally {
    await stopDaemons(daemons)
    for (const rogue of rogues) {
      await rogue.router.close()
      await rogue.registry.close()
    }
    await client.close()
    await rm(root, { recursive: true, force: true })
  }
}
