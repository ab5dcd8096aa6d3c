/**
 * bench/daemon: N `kadmirror registry` daemon processes on loopback (N = 10 and 30), as operators run them (the
 * bundled daemon): an
 * OCI-layout store each, static bootstrap to three seed nodes, `--allow-loopback`. For each N: time from spawn to
 * `/readyz` 200, RSS per daemon idle (10 s after the last joined) and after node 1 advertised 10 000 keys and the
 * cluster served 1 000 mirror requests (hits through peers and misses), and idle CPU per daemon. Target: RSS ≤ 96 MiB
 * per daemon (GEP-0043 runs Spegel under MemoryMax=100M; Spegel's chart limits it to 128 MiB).
 *
 * Usage: node bench/src/daemon.ts [--sizes 10,30] [--keys 10000] [--requests 1000] [--settle-s 10]
 *   [--daemon-args=--libp2p-metrics] (more flags for every `kadmirror registry`, shown in each row)
 */
import { randomFillSync } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type BuiltImage, buildImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import {
  allReady,
  bundledCli,
  type Daemon,
  freePorts,
  startDaemon,
  stopDaemons
} from '@kadmirror/test-support/daemons'
import { printTable, type Row, writeResults } from './report.ts'

/** The daemon issue's memory target per daemon, in MiB. */
const TARGET_RSS_MIB = 96
/** Layers per generated image (each image brings layers + 3 keys: config, manifest, tag). */
const LAYERS_PER_IMAGE = 497
/** Mirror requests in flight at once. */
const CONCURRENCY = 8

/** A process's resident set, in MiB, from /proc. */
async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) / 1024
}

/** A process's CPU time so far (user + system), in seconds, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? []
  const ticks = Number(fields[11]) + Number(fields[12])
  return ticks / 100
}

const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length
const pids = (daemons: readonly Daemon[]): number[] => daemons.map((d) => d.process.pid as number)

/** Images that together hold about `keys` advertised keys. */
function imagesFor(keys: number): BuiltImage[] {
  const count = Math.max(1, Math.round(keys / (LAYERS_PER_IMAGE + 3)))
  return Array.from({ length: count }, () =>
    buildImage({ layers: Array.from({ length: LAYERS_PER_IMAGE }, () => randomFillSync(new Uint8Array(64))) })
  )
}

/** Starts `size` daemons (node 1 seeded with `images`) and resolves them with each one's time to `/readyz`, in s. */
async function startCluster(root: string, size: number, images: BuiltImage[], daemonArgs: string[]) {
  const ports = await freePorts(size * 3)
  const router = (i: number): string => `/ip4/127.0.0.1/tcp/${ports[i * 3 + 1]}`
  const store = await openOciLayoutStore({ directory: join(root, 'node-1', 'layout') })
  for (const [i, image] of images.entries())
    await store.addImage(`registry.example.com/bench/app:${i}`, image)
  await store.close()
  const seeds = Math.min(3, size)
  const readyS: number[] = []
  const results = await Promise.allSettled(
    Array.from({ length: size }, async (_, i) => {
      const layout = join(root, `node-${i + 1}`, 'layout')
      await mkdir(layout, { recursive: true })
      const started = performance.now()
      const peers = Array.from({ length: seeds }, (_, j) => j)
        .filter((j) => j !== i)
        .map(router)
      const daemon = await startDaemon({
        // As operators run it: the bundle, with its own runtime settings.
        cli: await bundledCli(),
        name: `node ${i + 1}`,
        store: layout,
        dataDir: join(root, `node-${i + 1}`, 'data'),
        ports: {
          registry: ports[i * 3] as number,
          router: ports[i * 3 + 1] as number,
          metrics: ports[i * 3 + 2] as number
        },
        peers: peers.length > 0 ? peers : [router((i + 1) % size)],
        extraArgs: ['--log-level=WARN', ...daemonArgs]
      })
      while (
        (await fetch(`${daemon.registryUrl}/readyz`).then(
          (r) => r.status,
          () => 0
        )) !== 200
      )
        await new Promise((resolve) => setTimeout(resolve, 20))
      readyS[i] = (performance.now() - started) / 1000
      return daemon
    })
  )
  const daemons = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))
  const failed = results.find((result) => result.status === 'rejected')
  if (failed !== undefined) {
    // Stop the ones that did start: a failed run leaves no daemon behind.
    await stopDaemons(daemons)
    throw failed.reason
  }
  return { daemons, readyS }
}

/** Waits until every daemon's view holds all the others. */
async function meshFormed(daemons: readonly Daemon[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  const peersOf = async (d: Daemon): Promise<number> => {
    const text = await (await fetch(`${d.metricsUrl}/metrics`)).text()
    return Number(/^kadmirror_router_peers (\d+)/m.exec(text)?.[1] ?? 0)
  }
  while (Date.now() < deadline) {
    const counts = await Promise.all(daemons.map(peersOf))
    if (counts.every((c) => c === daemons.length - 1)) return true
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  return false
}

/** Mean RSS, max RSS and mean CPU (% of a core) over `seconds`. */
async function sample(daemons: readonly Daemon[], seconds: number) {
  const before = await Promise.all(pids(daemons).map(cpuSeconds))
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  const after = await Promise.all(pids(daemons).map(cpuSeconds))
  const rss = await Promise.all(pids(daemons).map(rssMiB))
  const cpu = after.map((t, i) => ((t - (before[i] as number)) / seconds) * 100)
  return { rssMean: mean(rss), rssMax: Math.max(...rss), cpuMean: mean(cpu) }
}

/** `total` mirror requests to daemons 2..N: blobs of node 1's images (through a peer) and, every fifth, a miss. */
async function mirrorRequests(daemons: readonly Daemon[], images: BuiltImage[], total: number) {
  const blobs = images.flatMap((image) => [...image.blobs.keys()])
  const askers = daemons.length > 1 ? daemons.slice(1) : daemons
  let next = 0
  const counts = { hits: 0, hitsServed: 0, misses: 0, misses404: 0, errors: 0 }
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++
      const asker = askers[i % askers.length] as Daemon
      const digest =
        i % 5 === 4 ? `sha256:${'f'.repeat(60)}${String(i).padStart(4, '0')}` : blobs[i % blobs.length]
      const res = await fetch(
        `${asker.registryUrl}/v2/bench/app/blobs/${digest}?ns=registry.example.com`
      ).catch(() => undefined)
      await res?.arrayBuffer()
      if (res === undefined || res.status >= 500) counts.errors++
      if (i % 5 === 4) {
        counts.misses++
        if (res?.status === 404) counts.misses404++
      } else {
        counts.hits++
        if (res?.status === 200) counts.hitsServed++
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  return { seconds: (performance.now() - started) / 1000, ...counts }
}

async function benchSize(
  size: number,
  keys: number,
  requests: number,
  settleS: number,
  daemonArgs: string[]
): Promise<Row> {
  const root = await mkdtemp(join(tmpdir(), 'kadmirror-bench-daemon-'))
  const images = imagesFor(keys)
  let daemons: Daemon[] = []
  try {
    console.error(`bench/daemon: ${size} daemons…`)
    const cluster = await startCluster(root, size, images, daemonArgs)
    daemons = cluster.daemons
    await allReady(daemons)
    const formed = await meshFormed(daemons, 120_000)
    const idle = await sample(daemons, settleS)
    const load = await mirrorRequests(daemons, images, requests)
    const loaded = await sample(daemons, settleS)
    return {
      daemons: size,
      flags: daemonArgs.join(' ') || '—',
      'mesh formed': formed ? 'yes' : 'no',
      'ready p50 s': [...cluster.readyS].sort((a, b) => a - b)[Math.floor(size / 2)] as number,
      'ready max s': Math.max(...cluster.readyS),
      'RSS idle MiB mean / max': `${idle.rssMean.toFixed(1)} / ${idle.rssMax.toFixed(1)}`,
      'CPU idle % per daemon': idle.cpuMean,
      'keys advertised': images.length * (LAYERS_PER_IMAGE + 3),
      'requests / s': requests / load.seconds,
      // A hit answered 404 is a peer not found within the resolve timeout (20 ms): the client goes upstream.
      'hits from a peer': `${load.hitsServed}/${load.hits}`,
      'misses 404': `${load.misses404}/${load.misses}`,
      errors: load.errors,
      'RSS after MiB mean / max': `${loaded.rssMean.toFixed(1)} / ${loaded.rssMax.toFixed(1)}`,
      [`RSS ≤ ${TARGET_RSS_MIB} MiB`]:
        Math.max(idle.rssMax, loaded.rssMax) <= TARGET_RSS_MIB ? 'met' : 'NOT met'
    }
  } finally {
    await stopDaemons(daemons)
    await rm(root, { recursive: true, force: true })
  }
}

/** Runs bench/daemon; resolves true when every size met the RSS target. */
export async function benchDaemon(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: {
      sizes: { type: 'string', default: '10,30' },
      keys: { type: 'string', default: '10000' },
      requests: { type: 'string', default: '1000' },
      'settle-s': { type: 'string', default: '10' },
      'daemon-args': { type: 'string', default: '' }
    }
  })
  const sizes = (values.sizes ?? '').split(',').map(Number)
  const [keys, requests, settleS] = [values.keys, values.requests, values['settle-s']].map(Number) as [
    number,
    number,
    number
  ]
  if (sizes.some((n) => !Number.isInteger(n) || n < 1) || [keys, requests, settleS].some((n) => !(n >= 0))) {
    console.error(
      'bench/daemon: --sizes takes whole numbers; --keys, --requests and --settle-s non-negative numbers'
    )
    return false
  }
  const rows: Row[] = []
  const daemonArgs = (values['daemon-args'] ?? '').split(' ').filter((arg) => arg !== '')
  for (const size of sizes) rows.push(await benchSize(size, keys, requests, settleS, daemonArgs))
  printTable(`bench/daemon: kadmirror registry processes on loopback (RSS and CPU from /proc)`, rows)
  console.log(`wrote ${await writeResults('daemon', { targetRssMiB: TARGET_RSS_MIB, rows })}`)
  return rows.every((row) => row[`RSS ≤ ${TARGET_RSS_MIB} MiB`] === 'met')
}

if (import.meta.main) await benchDaemon(process.argv.slice(2))
