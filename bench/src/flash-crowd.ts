/**
 * bench/flash-crowd: N nodes pull the same new image at once. Every node is a real containerd (Debian's 1.6, or 2.x
 * built from the Go module proxy with `--containerd 2`) with the bundled kadmirror daemon beside it, in a network
 * namespace of its own; the upstream registry (docker-registry) is in one more. All are joined by a bridge; `tc`
 * limits the upstream's uplink (200 Mbit/s by default) and each node's (1 Gbit/s). The pulls (`ctr content fetch`
 * through a hosts.toml naming the node's mirror first, as kubelet's pulls go: distribution only, no unpacking, so the
 * 2 cores are not spent on gunzip) start within a few ms of each other.
 *
 * Modes, each on fresh containerds and daemons, in one run: `alone` (one node, no mirror: the baseline), `seeded`
 * (one node pulled the image before; the other N − 1 pull it at once from peers: what this machine can move through
 * mirrors at all, the floor of the crowd's time here), `flash-crowd` (kadmirror as shipped), `advertise-only`
 * (kadmirror with `--flash-crowd=false`: what every mirror that advertises only what it holds does), `no-mirror`
 * (containerd straight to upstream). Measured: bytes the upstream sent for blobs (its access log) ÷ the image, the
 * time until the last node has the image ÷ the baseline, the share of the cores busy and the CPU seconds of the
 * mirrors, containerd and ctr. Targets (issue 18): ≤ 2 and ≤ 1.5. `--log-dir D` keeps every daemon's DEBUG log.
 *
 * Needs root, iproute2, containerd, docker-registry, umoci and skopeo; prints why and returns otherwise.
 * Usage: node bench/src/run.ts flash-crowd -- [--nodes 10,20] [--sizes 100,500] [--upstream-mbit 200]
 *   [--uplink-mbit 1000] [--containerd 1.6|2] [--modes alone,seeded,flash-crowd,advertise-only,no-mirror] [--log-dir D]
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { openSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { renderHostsToml } from '@kadmirror/containerd'
import { waitFor } from '@kadmirror/test-support'
import { bundledCli, stopProcess } from '@kadmirror/test-support/daemons'
import { buildContainerd2, goUnavailable } from '@kadmirror/test-support/go-builds'
import { createNetwork, type NetworkNode, netnsUnavailable } from '@kadmirror/test-support/netns'
import {
  CONTAINERD,
  type ContainerdBinaries,
  type ContainerdProcess,
  CTR,
  startContainerd
} from '../../packages/containerd/test/containerd-process.ts'
import {
  blobSizes,
  buildAndPush,
  e2eUnavailable,
  mkdtemp,
  rm,
  startRegistry,
  writeRegistryConfig
} from '../../test/e2e/fixtures.ts'
import { busyPercent, cpuTimes } from './cpu.ts'
import { answersFrom, startUpstream, type UpstreamLog } from './flash-crowd-upstream.ts'
import { printTable, type Row, writeResults } from './report.ts'

const MiB = 1024 * 1024
const TARGETS = { upstreamPerImage: 2, lastNodeVsAlone: 1.5 }
const MODES = ['alone', 'seeded', 'flash-crowd', 'advertise-only', 'no-mirror'] as const
type Mode = (typeof MODES)[number]
const NAMESPACE = 'k8s.io'

interface Options {
  nodes: number[]
  sizesMib: number[]
  upstreamMbit: number
  uplinkMbit: number
  containerd: '1.6' | '2'
  modes: Mode[]
  /** Where daemons write their logs (DEBUG level), one file per node and mode; undefined: ERROR level, to stderr. */
  logDir: string | undefined
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      nodes: { type: 'string', default: '10,20' },
      sizes: { type: 'string', default: '100,500' },
      'upstream-mbit': { type: 'string', default: '200' },
      'uplink-mbit': { type: 'string', default: '1000' },
      containerd: { type: 'string', default: '1.6' },
      modes: { type: 'string', default: MODES.join(',') },
      'log-dir': { type: 'string' }
    }
  })
  const positive = (name: string, text: string): number => {
    const n = Number(text)
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} takes positive integers, not "${text}"`)
    return n
  }
  const list = (name: string, text: string) => text.split(',').map((t) => positive(name, t))
  if (values.containerd !== '1.6' && values.containerd !== '2') throw new Error('--containerd takes 1.6 or 2')
  const modes = values.modes.split(',')
  const unknown = modes.find((m) => !(MODES as readonly string[]).includes(m))
  if (unknown !== undefined) throw new Error(`--modes: unknown mode ${unknown}; known: ${MODES.join(', ')}`)
  return {
    nodes: list('nodes', values.nodes),
    sizesMib: list('sizes', values.sizes),
    upstreamMbit: positive('upstream-mbit', values['upstream-mbit']),
    uplinkMbit: positive('uplink-mbit', values['uplink-mbit']),
    containerd: values.containerd,
    modes: modes as Mode[],
    logDir: values['log-dir']
  }
}

/** Layer sizes of an image of `mib` MiB: 4 layers up to 200 MiB, 5 above (the largest 40 % of it). */
function layersOf(mib: number): number[] {
  const shares = mib <= 200 ? [0.4, 0.3, 0.2, 0.1] : [0.4, 0.3, 0.16, 0.1, 0.04]
  return shares.map((s) => Math.round(s * mib * MiB))
}

/** Limits `node`'s uplink (its eth0's egress) to `mbit`. */
async function limitUplink(node: NetworkNode, mbit: number): Promise<void> {
  await node.run('tc', [
    ...['qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', `${mbit}mbit`],
    ...['burst', '256kb', 'latency', '100ms']
  ])
}

/** One node of a run: its containerd, its hosts directory and, with a mirror, its daemon. */
interface RunNode {
  network: NetworkNode
  containerd: ContainerdProcess
  hostsDir: string
  daemon?: ChildProcess
}

/** Starts the bundled daemon beside `node`'s containerd, the other nodes as its static peers. */
function startDaemon(
  cli: string,
  node: RunNode,
  dataDir: string,
  peers: string[],
  extra: string[],
  logFile: string | undefined
) {
  const address = node.network.address
  const log = logFile === undefined ? 'ignore' : openSync(logFile, 'w')
  return node.network.spawn(
    process.execPath,
    [
      cli,
      'registry',
      ...['--containerd-sock', node.containerd.socket, '--containerd-namespace', NAMESPACE],
      ...['--containerd-content-path', node.containerd.contentDir, '--data-dir', dataDir],
      ...[
        `--registry-addr=${address}:5000`,
        `--router-addr=${address}:5001`,
        `--metrics-addr=${address}:9090`
      ],
      ...['--bootstrap-kind=static', '--static-bootstrap-peers', ...peers.map((p) => `/ip4/${p}/tcp/5001`)],
      `--log-level=${logFile === undefined ? 'ERROR' : 'DEBUG'}`,
      ...extra
    ],
    { stdio: ['ignore', log, logFile === undefined ? 'inherit' : log] }
  )
}

/** Waits until `node`'s mirror answers /readyz 200 (it has peers), asked from inside its namespace. */
async function mirrorReady(node: RunNode): Promise<void> {
  const ready = async (): Promise<boolean> => {
    if (node.daemon?.exitCode !== null) throw new Error(`the daemon on ${node.network.name} exited`)
    return answersFrom(node.network, `http://${node.network.address}:5000/readyz`)
  }
  await waitFor(ready, 60_000, `the daemon on ${node.network.name} to be ready`, 250)
}

/** What a run needs from the benchmark's setup. */
interface Setup {
  cli: string
  work: string
  upstream: { address: string; log: UpstreamLog }
  binaries: ContainerdBinaries
  reference: (mib: number) => string
  sizes: Map<number, Map<string, number>>
  logDir: string | undefined
}

/** Starts containerd (and the daemon, with a mirror) on each of `nodes` for one mode. */
async function startNodes(setup: Setup, nodes: NetworkNode[], mode: Mode, tag: string): Promise<RunNode[]> {
  const started: RunNode[] = []
  const mirror = mode !== 'alone' && mode !== 'no-mirror'
  try {
    for (const network of nodes) {
      const containerd = await startContainerd({ ...setup.binaries, prefix: network.prefix })
      const hostsDir = join(setup.work, tag, network.name, 'hosts')
      const upstream = `http://${setup.upstream.address}:5000`
      await mkdir(join(hostsDir, `${setup.upstream.address}:5000`), { recursive: true })
      const mirrors = [mirror ? `http://${network.address}:5000` : upstream]
      await writeFile(
        join(hostsDir, `${setup.upstream.address}:5000`, 'hosts.toml'),
        renderHostsToml(upstream, mirrors)
      )
      started.push({ network, containerd, hostsDir })
    }
    if (!mirror) return started
    const extra = mode === 'advertise-only' ? ['--flash-crowd=false'] : []
    for (const node of started) {
      const peers = started.filter((n) => n !== node).map((n) => n.network.address)
      const dataDir = join(setup.work, tag, node.network.name, 'data')
      const logFile =
        setup.logDir === undefined ? undefined : join(setup.logDir, `${tag}-${node.network.name}.log`)
      node.daemon = startDaemon(setup.cli, node, dataDir, peers, extra, logFile)
    }
    await Promise.all(started.map(mirrorReady))
    // Let every routing table fill (each node dialled all others) before the crowd arrives.
    await new Promise((resolve) => setTimeout(resolve, 3000))
    return started
  } catch (err) {
    await stopNodes(started)
    throw err
  }
}

/**
 * What to stop if the benchmark is interrupted (SIGINT, SIGTERM): the nodes, the upstream and the namespaces it
 * started, in the reverse order; then the process exits 130.
 */
const onInterrupt = new Set<() => Promise<void>>()

/** Runs `work` with `stop` registered for an interrupt meanwhile; `stop` runs at the end either way. */
async function stoppedAfter<T>(stop: () => Promise<void>, work: () => Promise<T>): Promise<T> {
  onInterrupt.add(stop)
  try {
    return await work()
  } finally {
    onInterrupt.delete(stop)
    await stop()
  }
}

function stopOnInterrupt(): () => void {
  const handler = (): void => {
    const stops = [...onInterrupt].reverse()
    onInterrupt.clear()
    void (async () => {
      for (const stop of stops) await stop().catch(() => {})
      process.exit(130)
    })()
  }
  process.once('SIGINT', handler)
  process.once('SIGTERM', handler)
  return () => {
    process.off('SIGINT', handler)
    process.off('SIGTERM', handler)
  }
}

async function stopNodes(nodes: RunNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => stopProcess(n.daemon)))
  await Promise.all(nodes.map((n) => n.containerd.stop()))
}

/**
 * One node's pull: `ctr content fetch` of `reference` in the node's namespace (its progress output discarded);
 * resolves when it ended, in ms from `origin`. Rejects with the end of its error output when it fails.
 */
async function fetchImage(
  setup: Setup,
  node: RunNode,
  reference: string,
  origin: number
): Promise<{ startMs: number; endMs: number }> {
  const startMs = performance.now() - origin
  const [file, ...prefix] = [...node.network.prefix, setup.binaries.ctr]
  const args = [...prefix, '-a', node.containerd.socket, '-n', NAMESPACE, 'content', 'fetch']
  const child = spawn(file as string, [...args, '--hosts-dir', node.hostsDir, reference], {
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let errors = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    errors = (errors + chunk.toString()).slice(-2000)
  })
  const [code] = (await once(child, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`${node.network.name}: ctr content fetch exited ${code}: ${errors}`)
  return { startMs, endMs: performance.now() - origin }
}

/** CPU seconds used so far by every process on the machine, by command (`node` without this benchmark's own). */
async function cpuByCommand(): Promise<Record<string, number>> {
  const seconds: Record<string, number> = {}
  for (const pid of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(pid) || Number(pid) === process.pid) continue
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    const command = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const used = (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100
    if (command !== '' && used > 0) seconds[command] = (seconds[command] ?? 0) + used
  }
  return seconds
}

/** CPU seconds of this process's children that ended and were waited for (the `ctr` pulls). */
async function endedChildrenCpu(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[13] ?? 0) + Number(fields[14] ?? 0)) / 100
}

/** CPU seconds each command used between two readings; `ctr` from the ended children's account. */
function cpuSpent(
  before: Record<string, number>,
  after: Record<string, number>,
  ctrSeconds: number
): Record<string, number> {
  const spent: Record<string, number> = { ctr: ctrSeconds }
  const delta = (command: string): number => Math.max(0, (after[command] ?? 0) - (before[command] ?? 0))
  // Node names its main thread MainThread once a process re-executes itself (the daemon does, for its runtime).
  spent.node = delta('node') + delta('MainThread')
  for (const command of ['containerd', 'docker-registry']) spent[command] = delta(command)
  return spent
}

/**
 * Pulls the image on `holder` alone, then waits until `asker`'s mirror finds every blob of it at a peer (the records
 * arrived). Its tag is not waited for: one holder is below the default tag quorum, so the tag comes from upstream.
 */
async function seed(setup: Setup, holder: RunNode, asker: RunNode, mib: number): Promise<void> {
  await fetchImage(setup, holder, setup.reference(mib), performance.now())
  for (const digest of (setup.sizes.get(mib) as Map<string, number>).keys())
    await untilFound(asker, `/v2/bench/crowd/blobs/${digest}?ns=${setup.upstream.address}:5000`)
}

/** Waits until `node`'s mirror answers HEAD `path` with 200. */
async function untilFound(node: RunNode, path: string): Promise<void> {
  const url = `http://${node.network.address}:5000${path}`
  await waitFor(
    () => answersFrom(node.network, url, true),
    60_000,
    `${node.network.name}'s mirror to find ${path}`,
    250
  )
}

/** What one mode measured. */
interface Measured {
  mode: Mode
  nodes: number
  imageMib: number
  upstreamPerImage: number
  upstreamBlobGets: number
  /** Blob GETs the upstream answered per blob, by digest. */
  getsPerBlob: Record<string, number>
  lastNodeSeconds: number
  firstNodeSeconds: number
  medianSeconds: number
  startSpreadMs: number
  /** Share of both cores busy during the pulls, in %. */
  cpuBusyPercent: number
  /**
   * CPU seconds spent during the pulls by the mirrors (`node`), containerd, ctr (the pulling clients) and the
   * upstream (`docker-registry`).
   */
  cpuSeconds: Record<string, number>
}

/** Runs one mode on `nodes` pulling the image of `mib` MiB. */
async function runMode(setup: Setup, nodes: NetworkNode[], mib: number, mode: Mode): Promise<Measured> {
  const tag = `${mode}-${nodes.length}-${mib}`
  const running = await startNodes(setup, mode === 'alone' ? nodes.slice(0, 1) : nodes, mode, tag)
  return stoppedAfter(
    () => stopNodes(running),
    () => measureMode(setup, running, mib, mode)
  )
}

/** Pulls the image of `mib` MiB on the `running` nodes at once (after a seed in `seeded` mode) and measures it. */
async function measureMode(setup: Setup, running: RunNode[], mib: number, mode: Mode): Promise<Measured> {
  const [first, ...rest] = running as [RunNode, ...RunNode[]]
  if (mode === 'seeded') await seed(setup, first, rest[0] as RunNode, mib)
  const pulling = mode === 'seeded' ? rest : running
  const fromLog = setup.upstream.log.entries.length
  const cpuBefore = await cpuTimes()
  const commandsBefore = await cpuByCommand()
  const childrenBefore = await endedChildrenCpu()
  const origin = performance.now()
  const pulls = await Promise.all(pulling.map((n) => fetchImage(setup, n, setup.reference(mib), origin)))
  const cpuAfter = await cpuTimes()
  const ctrSeconds = (await endedChildrenCpu()) - childrenBefore
  const cpuSeconds = cpuSpent(commandsBefore, await cpuByCommand(), ctrSeconds)
  const sizes = setup.sizes.get(mib) as Map<string, number>
  const blobGets = setup.upstream.log.entries.slice(fromLog).filter((e) => e.method === 'GET' && e.blob)
  const getsPerBlob: Record<string, number> = {}
  for (const get of blobGets) getsPerBlob[get.digest] = (getsPerBlob[get.digest] ?? 0) + 1
  const imageBytes = [...sizes.values()].reduce((a, b) => a + b, 0)
  const ends = pulls.map((p) => p.endMs).sort((a, b) => a - b)
  const starts = pulls.map((p) => p.startMs)
  return {
    mode,
    nodes: pulling.length,
    imageMib: mib,
    upstreamPerImage: blobGets.reduce((sum, e) => sum + e.bytes, 0) / imageBytes,
    upstreamBlobGets: blobGets.length,
    getsPerBlob,
    lastNodeSeconds: (ends.at(-1) as number) / 1000,
    firstNodeSeconds: (ends[0] as number) / 1000,
    medianSeconds: (ends[ends.length >> 1] as number) / 1000,
    startSpreadMs: Math.max(...starts) - Math.min(...starts),
    cpuBusyPercent: busyPercent(cpuBefore, cpuAfter),
    cpuSeconds
  }
}

/** Builds the images (one per size) in a registry on loopback; its storage is then served from the namespace. */
async function buildImages(work: string, sizesMib: number[]): Promise<Map<number, Map<string, number>>> {
  const registry = await startRegistry(work)
  try {
    const sizes = new Map<number, Map<string, number>>()
    for (const mib of sizesMib) {
      await buildAndPush(work, registry.host, 'bench/crowd', `${mib}mib`, layersOf(mib))
      sizes.set(mib, await blobSizes(registry.host, 'bench/crowd', `${mib}mib`))
    }
    return sizes
  } finally {
    await registry.stop()
  }
}

function rowOf(m: Measured, alone: number | undefined): Row {
  return {
    nodes: m.nodes,
    'image MiB': m.imageMib,
    mode: m.mode,
    'upstream ÷ image': m.upstreamPerImage,
    'blob GETs upstream': m.upstreamBlobGets,
    'first s': m.firstNodeSeconds,
    'median s': m.medianSeconds,
    'last s': m.lastNodeSeconds,
    'last ÷ alone': alone === undefined ? '' : m.lastNodeSeconds / alone,
    'start spread ms': m.startSpreadMs,
    'CPU busy %': m.cpuBusyPercent,
    'CPU s: mirrors': m.cpuSeconds.node ?? 0,
    'CPU s: containerd': m.cpuSeconds.containerd ?? 0,
    'CPU s: ctr': m.cpuSeconds.ctr ?? 0
  }
}

/** Why the benchmark cannot run here, or undefined. */
async function unavailable(options: Options): Promise<string | undefined> {
  return (
    (await netnsUnavailable()) ??
    e2eUnavailable() ??
    (options.containerd === '2' ? await goUnavailable() : undefined)
  )
}

/** Runs every size and mode on `count` nodes (a network of their own, with the upstream); resolves what they measured. */
async function benchNodes(
  options: Options,
  common: Omit<Setup, 'upstream' | 'reference'>,
  count: number
): Promise<Measured[]> {
  const names = [...Array.from({ length: count }, (_, i) => `n${i}`), 'upstream']
  const network = await createNetwork(names)
  return stoppedAfter(
    () => network.close(),
    async () => {
      const upstreamNode = network.nodes.upstream as NetworkNode
      const config = join(common.work, `registry-${count}.yml`)
      await writeRegistryConfig(config, join(common.work, 'storage'), `${upstreamNode.address}:5000`)
      const upstream = await startUpstream(upstreamNode, config)
      return stoppedAfter(
        () => upstream.stop(),
        async () => {
          await limitUplink(upstreamNode, options.upstreamMbit)
          const nodes = names.slice(0, count).map((n) => network.nodes[n] as NetworkNode)
          for (const node of nodes) await limitUplink(node, options.uplinkMbit)
          const setup: Setup = {
            ...common,
            upstream: { address: upstreamNode.address, log: upstream.log },
            reference: (mib) => `${upstreamNode.address}:5000/bench/crowd:${mib}mib`
          }
          const results: Measured[] = []
          for (const mib of options.sizesMib) results.push(...(await benchSize(setup, options, nodes, mib)))
          return results
        }
      )
    }
  )
}

/** Every mode for the image of `mib` MiB on `nodes`; prints their table. */
async function benchSize(
  setup: Setup,
  options: Options,
  nodes: NetworkNode[],
  mib: number
): Promise<Measured[]> {
  const measured: Measured[] = []
  for (const mode of options.modes) {
    const m = await runMode(setup, nodes, mib, mode)
    measured.push(m)
    console.log(
      `  ${nodes.length} nodes, ${mib} MiB, ${mode}: last ${m.lastNodeSeconds.toFixed(1)} s, upstream ${m.upstreamPerImage.toFixed(2)} × image`
    )
  }
  const alone = measured.find((m) => m.mode === 'alone')?.lastNodeSeconds
  printTable(
    `bench/flash-crowd: ${nodes.length} nodes, ${mib} MiB image (targets: upstream ÷ image ≤ ${TARGETS.upstreamPerImage}, last ÷ alone ≤ ${TARGETS.lastNodeVsAlone})`,
    measured.map((m) => rowOf(m, alone))
  )
  return measured
}

/** Runs bench/flash-crowd; resolves false when a mode failed. Stops what it started when interrupted. */
export async function benchFlashCrowd(args: string[]): Promise<boolean> {
  const options = parseOptions(args)
  const reason = await unavailable(options)
  if (reason !== undefined) {
    console.log(`bench/flash-crowd skipped: ${reason}`)
    return true
  }
  const work = await mkdtemp(join(tmpdir(), 'kadmirror-crowd-bench-'))
  const release = stopOnInterrupt()
  try {
    return await stoppedAfter(
      () => rm(work, { recursive: true, force: true }),
      async () => {
        const binaries =
          options.containerd === '2' ? await buildContainerd2() : { containerd: CONTAINERD, ctr: CTR }
        const cli = await bundledCli()
        const sizes = await buildImages(work, options.sizesMib)
        if (options.logDir !== undefined) await mkdir(options.logDir, { recursive: true })
        const common = { cli, work, binaries, sizes, logDir: options.logDir }
        const results: Measured[] = []
        for (const count of options.nodes) results.push(...(await benchNodes(options, common, count)))
        const images = Object.fromEntries([...sizes].map(([mib, blobs]) => [mib, Object.fromEntries(blobs)]))
        const data = { options, targets: TARGETS, images, results }
        console.log(`results: ${await writeResults('flash-crowd', data)}`)
        return true
      }
    )
  } finally {
    release()
  }
}
