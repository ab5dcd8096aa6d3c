/**
 * bench/swarm: one large blob held by 1, 2 and 4 peers whose uplinks are each limited with `tc` (500 Mbit/s by
 * default), fetched by one node through its mirror — from several peers at once (pieces), and, in the same run, as
 * before (one peer at a time, `--max-piece-providers=1`), and with one provider much slower than the others; and the
 * same in the forwarding mode (`--verify-before-forwarding=false`: the first byte before the last). Every
 * node is the bundled daemon in a network namespace of its own (test-support's netns: one per node on a bridge).
 * Also the asking daemon's memory during the transfer (its RSS peak over its RSS before), against the stated
 * budget. Options: --size-mib N (1024), --uplink-mbit N (500), --slow-mbit N (50). Needs root and iproute2.
 */
import type { ChildProcess } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { copyFile, link, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { type Descriptor, type Digest, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { bundledCli, stopProcess } from '@kadmirror/test-support/daemons'
import {
  createNetwork,
  type NetworkNode,
  netnsUnavailable,
  type TestNetwork
} from '@kadmirror/test-support/netns'
import { busyPercent, cpuTimes } from './cpu.ts'
import { printTable, type Row, writeResults } from './report.ts'

const MIB = 1024 * 1024
const PROVIDERS = ['p1', 'p2', 'p3', 'p4']
const REFERENCE = 'registry.example.com/swarm/big:1'
/** The asker's flag for the forwarding mode (bytes to the client as they arrive, the last ones held back). */
const FORWARDED = '--verify-before-forwarding=false'

interface Options {
  sizeMib: number
  uplinkMbit: number
  slowMbit: number
  askers: number
  imageMib: number
  cap: number
  only: string | undefined
}

function parseOptions(args: string[]): Options {
  const value = (name: string, fallback: number): number => {
    const at = args.indexOf(`--${name}`)
    const parsed = at === -1 ? fallback : Number(args[at + 1])
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`--${name} needs a positive number`)
    return parsed
  }
  const at = args.indexOf('--only')
  const only = at === -1 ? undefined : args[at + 1]
  if (only !== undefined && only !== 'pieces' && only !== 'fan-out')
    throw new Error('--only takes pieces or fan-out')
  return {
    sizeMib: value('size-mib', 1024),
    uplinkMbit: value('uplink-mbit', 500),
    slowMbit: value('slow-mbit', 50),
    askers: value('askers', 20),
    imageMib: value('image-mib', 200),
    cap: value('cap', 4),
    only
  }
}

/** An image written by {@link seedLayout}: its layers, and its config and manifest bytes. */
interface SeededImage {
  reference: string
  layers: { digest: Digest; size: number }[]
  config: Buffer
  manifest: Buffer
}

/** Writes an image of `count` random layers of `bytes` each into a new OCI layout at `dir`, tagged `reference`. */
async function seedLayout(
  dir: string,
  reference: string,
  count: number,
  bytes: number
): Promise<SeededImage> {
  const store = await openOciLayoutStore({ directory: dir })
  const chunk = Buffer.allocUnsafe(4 * MIB)
  const layers: { digest: Digest; size: number }[] = []
  for (let i = 0; i < count; i++)
    layers.push(
      await store.putBlob(
        (async function* () {
          for (let left = bytes; left > 0; left -= chunk.byteLength)
            yield randomFillSync(chunk).subarray(0, Math.min(left, chunk.byteLength))
        })()
      )
    )
  const diffIds = layers.map((l) => l.digest)
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } })
  )
  const configBlob = await store.putBlob(config)
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...configBlob },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER_TAR, ...l }))
    })
  )
  const manifestBlob = await store.putBlob(manifest)
  await store.tagImage(reference, { mediaType: OCI_MANIFEST, ...manifestBlob } as Descriptor)
  await store.close()
  return { reference, layers, config, manifest }
}

/** A copy of the layout at `from` in `to`, its blobs hard-linked (no second copy of the large one). */
async function linkLayout(from: string, to: string): Promise<void> {
  await mkdir(join(to, 'blobs', 'sha256'), { recursive: true })
  for (const name of ['oci-layout', 'index.json']) await copyFile(join(from, name), join(to, name))
  for (const blob of await readdir(join(from, 'blobs', 'sha256')))
    await link(join(from, 'blobs', 'sha256', blob), join(to, 'blobs', 'sha256', blob))
}

/** The client process in a namespace of the network, spoken to in JSON lines (answers matched by id). */
function startClient(node: NetworkNode): {
  pid: number | undefined
  ask(message: object): Promise<Record<string, unknown>>
  stop(): Promise<void>
} {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'swarm-client.ts')
  const child = node.spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] })
  const waiting = new Map<number, (answer: Record<string, unknown>) => void>()
  let next = 0
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const answer = JSON.parse(line) as Record<string, unknown>
    waiting.get(answer.id as number)?.(answer)
    waiting.delete(answer.id as number)
  })
  return {
    pid: child.pid,
    ask(message) {
      const id = next++
      child.stdin?.write(`${JSON.stringify({ ...message, id })}\n`)
      return new Promise((resolve) => waiting.set(id, resolve))
    },
    async stop() {
      child.stdin?.end()
      await stopProcess(child)
    }
  }
}

/** Limits a node's uplink (its eth0's egress) to `mbit`. */
async function limitUplink(node: NetworkNode, mbit: number): Promise<void> {
  await node.run('tc', [
    'qdisc',
    'replace',
    'dev',
    'eth0',
    'root',
    'tbf',
    'rate',
    `${mbit}mbit`,
    'burst',
    '256kb',
    'latency',
    '100ms'
  ])
}

/** Starts the bundled daemon on `node` with its layout and the others as static peers. */
function startDaemon(
  cli: string,
  node: NetworkNode,
  work: string,
  peers: NetworkNode[],
  extra: string[]
): ChildProcess {
  const args = [
    cli,
    'registry',
    `--store=oci-layout:${join(work, node.name, 'layout')}`,
    `--data-dir=${join(work, node.name, 'data')}`,
    ...[
      `--registry-addr=${node.address}:5000`,
      `--router-addr=${node.address}:5001`,
      `--metrics-addr=${node.address}:9090`
    ],
    ...[
      '--bootstrap-kind=static',
      '--static-bootstrap-peers',
      ...peers.map((p) => `/ip4/${p.address}/tcp/5001`)
    ],
    ...['--tag-quorum=1', '--log-level=ERROR', ...extra]
  ]
  const child = node.spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] })
  return child
}

/** Daemons on `nodes` (the others as static peers, `argsOf` each), and the client, once every mirror is ready. */
async function startCluster(
  cli: string,
  network: TestNetwork,
  work: string,
  nodes: NetworkNode[],
  argsOf: (node: NetworkNode) => string[]
): Promise<{ client: ReturnType<typeof startClient>; daemons: ChildProcess[]; stop(): Promise<void> }> {
  const daemons = nodes.map((node) =>
    startDaemon(
      cli,
      node,
      work,
      nodes.filter((n) => n !== node),
      argsOf(node)
    )
  )
  const client = startClient(network.nodes.client as NetworkNode)
  const stop = async (): Promise<void> => {
    await client.stop()
    await Promise.all(daemons.map((d) => stopProcess(d)))
  }
  const ready = await client.ask({ op: 'ready', urls: nodes.map((n) => `http://${n.address}:5000`) })
  if (ready.ok !== true) {
    await stop()
    throw new Error(`a daemon did not get ready (${JSON.stringify(ready)})`)
  }
  return { client, daemons, stop }
}

/** CPU seconds (user + system) `pid` has used so far (0 when it is gone). */
async function cpuSecondsOf(pid: number | undefined): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100
}

/** RSS of `pid` in bytes (0 when it is gone). */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024
}

interface Case {
  name: string
  providers: number
  slow?: boolean
  askerArgs: string[]
}

/** One row: start the providers and the asker, fetch the blob once through the asker's mirror, stop them all. */
async function runCase(
  cli: string,
  network: TestNetwork,
  work: string,
  digest: Digest,
  options: Options,
  c: Case
): Promise<Row> {
  const providers = PROVIDERS.slice(0, c.providers).map((name) => network.nodes[name] as NetworkNode)
  const asker = network.nodes.asker as NetworkNode
  for (const [i, p] of providers.entries())
    await limitUplink(
      p,
      c.slow === true && i === providers.length - 1 ? options.slowMbit : options.uplinkMbit
    )
  const everyone = [...providers, asker]
  const cluster = await startCluster(cli, network, work, everyone, (node) =>
    node === asker ? c.askerArgs : []
  )
  const { client, daemons } = cluster
  try {
    const url = `http://${asker.address}:5000/v2/swarm/big/blobs/${digest}?ns=registry.example.com`
    const found = await client.ask({ op: 'wait', url })
    if (found.ok !== true) throw new Error(`${c.name}: the asker never found the blob`)
    const pid = daemons.at(-1)?.pid as number
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const before = await rssOf(pid)
    let peak = before
    const sampler = setInterval(async () => {
      peak = Math.max(peak, await rssOf(pid))
    }, 50)
    const cpuBefore = await cpuTimes()
    const answer = await client.ask({ op: 'fetch', url })
    const cpu = busyPercent(cpuBefore, await cpuTimes())
    clearInterval(sampler)
    if (answer.status !== 200 || answer.bytes !== options.sizeMib * MIB)
      throw new Error(`${c.name}: ${JSON.stringify(answer)}`)
    const ms = answer.ms as number
    return {
      case: c.name,
      providers: c.providers,
      'MiB/s': (options.sizeMib / ms) * 1000,
      seconds: ms / 1000,
      'first byte s': (answer.firstByteMs as number) / 1000,
      'asker RSS before MiB': before / MIB,
      'asker RSS peak MiB': peak / MIB,
      'CPU busy %': cpu
    }
  } finally {
    await cluster.stop()
  }
}

/** Part 1: one blob held by 1, 2, 4 providers, fetched by one node. */
async function benchPieces(cli: string, options: Options, work: string): Promise<Row[]> {
  const network = await createNetwork(['client', 'asker', ...PROVIDERS])
  try {
    const seeded = await seedLayout(join(work, 'p1', 'layout'), REFERENCE, 1, options.sizeMib * MIB)
    const digest = seeded.layers[0]?.digest as Digest
    for (const name of PROVIDERS.slice(1))
      await linkLayout(join(work, 'p1', 'layout'), join(work, name, 'layout'))
    await mkdir(join(work, 'asker', 'layout'), { recursive: true })
    const cases: Case[] = [
      { name: 'one peer at a time (as before)', providers: 4, askerArgs: ['--max-piece-providers=1'] },
      { name: 'pieces, 1 provider', providers: 1, askerArgs: [] },
      { name: 'pieces, 2 providers', providers: 2, askerArgs: [] },
      { name: 'pieces, 4 providers', providers: 4, askerArgs: [] },
      {
        name: `pieces, 4 providers, one at ${options.slowMbit} Mbit/s`,
        providers: 4,
        slow: true,
        askerArgs: []
      },
      {
        name: 'forwarded as it arrives, one peer at a time',
        providers: 4,
        askerArgs: [FORWARDED, '--max-piece-providers=1']
      },
      { name: 'forwarded as it arrives, pieces, 4 providers', providers: 4, askerArgs: [FORWARDED] }
    ]
    const rows: Row[] = []
    for (const c of cases) rows.push(await runCase(cli, network, work, digest, options, c))
    const single = rows[1]?.['MiB/s'] as number
    for (const row of rows) row['× 1 provider'] = (row['MiB/s'] as number) / single
    printTable(
      `bench/swarm (pieces): a ${options.sizeMib} MiB blob through one node's mirror, providers' uplinks ${options.uplinkMbit} Mbit/s (tc), verified before the first byte unless forwarded`,
      rows
    )
    console.log(
      'targets: 4 providers ≥ 3× one, 2 ≥ 1.8×, one slow provider never below one provider; memory per transfer: 1 MiB of read buffers per provider + 1 MiB hashing, plus the 16 MiB copy pool that sends the spool to the client'
    )
    return rows
  } finally {
    await network.close()
  }
}

/** One fan-out mode: every node's flags. */
interface FanOutMode {
  name: string
  args: string[]
}

/**
 * Part 2: one node holds an image of 4 layers; N nodes pull it at once, each committing it to its own layout as
 * containerd does (so it then advertises it); a 404 is asked again a second later (no upstream here).
 */
async function benchFanOut(cli: string, options: Options, work: string): Promise<Row[]> {
  const askers = Array.from({ length: options.askers }, (_, i) => `a${i + 1}`)
  const network = await createNetwork(['client', 'h', ...askers])
  const root = join(work, 'fan-out')
  try {
    const layerBytes = Math.floor((options.imageMib / 4) * MIB)
    const image = await seedLayout(
      join(root, 'h', 'layout'),
      'registry.example.com/swarm/fan:1',
      4,
      layerBytes
    )
    const modes: FanOutMode[] = [
      {
        name: 'one provider serves all (as before)',
        args: ['--max-piece-providers=1', '--max-peer-uploads=0']
      },
      { name: `cap ${options.cap} uploads, pieces, fan-out`, args: [`--max-peer-uploads=${options.cap}`] }
    ]
    const rows: Row[] = []
    for (const mode of modes) rows.push(await runFanOut(cli, network, root, askers, image, options, mode))
    const baseline = rows[0]?.['all have it s'] as number
    for (const row of rows) row['× faster'] = baseline / (row['all have it s'] as number)
    printTable(
      `bench/swarm (fan-out): ${options.askers} nodes pull a ${options.imageMib} MiB image (4 layers) at once from one node; every uplink ${options.uplinkMbit} Mbit/s (tc)`,
      rows
    )
    console.log(`targets: ≥ 2× faster than one provider serving all, no node above its cap (${options.cap})`)
    return rows
  } finally {
    await network.close()
  }
}

/** One fan-out run: fresh asker layouts, every daemon started with the mode's flags, all pulls at once. */
async function runFanOut(
  cli: string,
  network: TestNetwork,
  root: string,
  askers: string[],
  image: SeededImage,
  options: Options,
  mode: FanOutMode
): Promise<Row> {
  const nodes = ['h', ...askers].map((name) => network.nodes[name] as NetworkNode)
  for (const name of askers) {
    await rm(join(root, name), { recursive: true, force: true })
    await mkdir(join(root, name, 'layout'), { recursive: true })
  }
  for (const node of nodes) await limitUplink(node, options.uplinkMbit)
  const cluster = await startCluster(cli, network, root, nodes, () => mode.args)
  const { client } = cluster
  // Each node's puller runs in the node's own namespace and reaches its mirror without crossing its uplink, as
  // containerd reaches the node's mirror on the node itself.
  const pullers = askers.map((name) => startClient(network.nodes[name] as NetworkNode))
  try {
    // Loaded before the clock starts (an answer comes once a puller's modules are in).
    await Promise.all(pullers.map((p) => p.ask({ op: 'ready', urls: [] })))
    const first = nodes[1] as NetworkNode
    const probe = `http://${first.address}:5000/v2/swarm/fan/blobs/${image.layers[0]?.digest}?ns=registry.example.com`
    if ((await client.ask({ op: 'wait', url: probe })).ok !== true)
      throw new Error(`${mode.name}: image not found`)
    const started = performance.now()
    const cpuBefore = await cpuTimes()
    const cpuOf = () =>
      Promise.all([...pullers.map((p) => p.pid), ...cluster.daemons.map((d) => d.pid)].map(cpuSecondsOf))
    const processCpuBefore = await cpuOf()
    const pulls = await Promise.all(
      askers.map((name, i) => {
        const node = network.nodes[name] as NetworkNode
        return (pullers[i] as ReturnType<typeof startClient>).ask({
          op: 'pull',
          mirror: `http://${node.address}:5000`,
          layout: join(root, name, 'layout'),
          reference: image.reference,
          repository: 'swarm/fan',
          layers: image.layers,
          config: image.config.toString('base64'),
          manifest: image.manifest.toString('base64')
        })
      })
    )
    const allMs = performance.now() - started
    const cpu = busyPercent(cpuBefore, await cpuTimes())
    const spent = (await cpuOf()).map((s, i) => s - (processCpuBefore[i] ?? 0))
    const sum = (values: number[]) => values.reduce((total, v) => total + v, 0)
    const pullerCpu = sum(spent.slice(0, pullers.length))
    const [holderCpu = 0, ...askerCpu] = spent.slice(pullers.length)
    // The most uploads each node served at once (kadmirror_peer_uploads_peak: read once, no polling during the run).
    const { peaks } = (await client.ask({
      op: 'peaks',
      urls: nodes.map((n) => `http://${n.address}:9090`)
    })) as unknown as { peaks: Record<string, number> }
    const failed = pulls.find((p) => p.error !== undefined)
    if (failed !== undefined) throw new Error(`${mode.name}: ${String(failed.error)}`)
    const times = pulls.map((p) => p.ms as number).sort((a, b) => a - b)
    return {
      mode: mode.name,
      nodes: askers.length,
      'all have it s': allMs / 1000,
      'first done s': (times[0] as number) / 1000,
      'median s': (times[times.length >> 1] as number) / 1000,
      'most uploads on one node': Math.max(...Object.values(peaks)),
      'uploads on the holder': peaks[`http://${(nodes[0] as NetworkNode).address}:9090`] ?? 0,
      '404s asked again': pulls.reduce((sum, p) => sum + (p.notFound as number), 0),
      'CPU busy %': cpu,
      'CPU s: holder': holderCpu,
      'CPU s: askers (sum)': sum(askerCpu),
      'CPU s: pullers (sum)': pullerCpu
    }
  } finally {
    await Promise.all(pullers.map((p) => p.stop()))
    await cluster.stop()
  }
}

/** Runs bench/swarm (`--only pieces` or `--only fan-out` for one part); resolves false when a case failed. */
export async function benchSwarm(args: string[]): Promise<boolean> {
  const reason = await netnsUnavailable()
  if (reason !== undefined) {
    console.log(`bench/swarm skipped: ${reason}`)
    return true
  }
  const options = parseOptions(args)
  const work = await mkdtemp(join(tmpdir(), 'kadmirror-swarm-'))
  try {
    const cli = await bundledCli()
    const pieces = options.only === 'fan-out' ? [] : await benchPieces(cli, options, work)
    const fanOut = options.only === 'pieces' ? [] : await benchFanOut(cli, options, work)
    console.log(`results: ${await writeResults('swarm', { options, pieces, fanOut })}`)
    return true
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}
