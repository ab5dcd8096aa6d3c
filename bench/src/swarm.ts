/**
 * bench/swarm: one large blob held by 1, 2 and 4 peers whose uplinks are each limited with `tc` (500 Mbit/s by
 * default), fetched by one node through its mirror — from several peers at once (pieces), and, in the same run, as
 * before (one peer at a time, `--max-piece-providers=1`), and with one provider much slower than the others. Every
 * node is the bundled daemon in a network namespace of its own (test-support's netns: one per node on a bridge).
 * Also the asking daemon's memory during the transfer (its RSS peak over its RSS before), against the stated
 * budget. Options: --size-mib N (1024), --uplink-mbit N (500), --slow-mbit N (50). Needs root and iproute2.
 */
import { type ChildProcess, spawn } from 'node:child_process'
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
import { printTable, type Row, writeResults } from './report.ts'

const MIB = 1024 * 1024
const PROVIDERS = ['p1', 'p2', 'p3', 'p4']
const REFERENCE = 'registry.example.com/swarm/big:1'

interface Options {
  sizeMib: number
  uplinkMbit: number
  slowMbit: number
}

function parseOptions(args: string[]): Options {
  const value = (name: string, fallback: number): number => {
    const at = args.indexOf(`--${name}`)
    const parsed = at === -1 ? fallback : Number(args[at + 1])
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`--${name} needs a positive number`)
    return parsed
  }
  return {
    sizeMib: value('size-mib', 1024),
    uplinkMbit: value('uplink-mbit', 500),
    slowMbit: value('slow-mbit', 50)
  }
}

/** Writes an image of one random layer of `bytes` into a new OCI layout at `dir`; resolves the layer's digest. */
async function seedLayout(dir: string, bytes: number): Promise<Digest> {
  const store = await openOciLayoutStore({ directory: dir })
  const chunk = Buffer.allocUnsafe(4 * MIB)
  const layer = await store.putBlob(
    (async function* () {
      for (let left = bytes; left > 0; left -= chunk.byteLength)
        yield randomFillSync(chunk).subarray(0, Math.min(left, chunk.byteLength))
    })()
  )
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [layer.digest] }
    })
  )
  const configBlob = await store.putBlob(config)
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...configBlob },
      layers: [{ mediaType: OCI_LAYER_TAR, ...layer }]
    })
  )
  const manifestBlob = await store.putBlob(manifest)
  await store.tagImage(REFERENCE, { mediaType: OCI_MANIFEST, ...manifestBlob } as Descriptor)
  await store.close()
  return layer.digest
}

/** A copy of the layout at `from` in `to`, its blobs hard-linked (no second copy of the large one). */
async function linkLayout(from: string, to: string): Promise<void> {
  await mkdir(join(to, 'blobs', 'sha256'), { recursive: true })
  for (const name of ['oci-layout', 'index.json']) await copyFile(join(from, name), join(to, name))
  for (const blob of await readdir(join(from, 'blobs', 'sha256')))
    await link(join(from, 'blobs', 'sha256', blob), join(to, 'blobs', 'sha256', blob))
}

/** The client process in the asker's namespace, spoken to in JSON lines. */
function startClient(node: NetworkNode): {
  ask(message: object): Promise<Record<string, unknown>>
  stop(): Promise<void>
} {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'swarm-client.ts')
  const child = node.spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]()
  return {
    async ask(message) {
      child.stdin?.write(`${JSON.stringify(message)}\n`)
      const { value } = await lines.next()
      return JSON.parse(String(value)) as Record<string, unknown>
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
  const daemons = everyone.map((node) =>
    startDaemon(
      cli,
      node,
      work,
      everyone.filter((n) => n !== node),
      node === asker ? c.askerArgs : []
    )
  )
  const client = startClient(network.nodes.client as NetworkNode)
  try {
    const ready = await client.ask({ op: 'ready', urls: everyone.map((n) => `http://${n.address}:5000`) })
    if (ready.ok !== true) throw new Error(`${c.name}: a daemon did not get ready (${JSON.stringify(ready)})`)
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
    const answer = await client.ask({ op: 'fetch', url })
    clearInterval(sampler)
    if (answer.status !== 200 || answer.bytes !== options.sizeMib * MIB)
      throw new Error(`${c.name}: ${JSON.stringify(answer)}`)
    const ms = answer.ms as number
    return {
      case: c.name,
      providers: c.providers,
      'MiB/s': (options.sizeMib / ms) * 1000,
      seconds: ms / 1000,
      'asker RSS before MiB': before / MIB,
      'asker RSS peak MiB': peak / MIB
    }
  } finally {
    await client.stop()
    await Promise.all(daemons.map((d) => stopProcess(d)))
  }
}

/** Runs bench/swarm; resolves false when a case failed. */
export async function benchSwarm(args: string[]): Promise<boolean> {
  const reason = await netnsUnavailable()
  if (reason !== undefined) {
    console.log(`bench/swarm skipped: ${reason}`)
    return true
  }
  const options = parseOptions(args)
  const work = await mkdtemp(join(tmpdir(), 'kadmirror-swarm-'))
  const network = await createNetwork(['client', 'asker', ...PROVIDERS])
  try {
    const cli = await bundledCli()
    const digest = await seedLayout(join(work, 'p1', 'layout'), options.sizeMib * MIB)
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
      }
    ]
    const rows: Row[] = []
    for (const c of cases) rows.push(await runCase(cli, network, work, digest, options, c))
    const single = rows[1]?.['MiB/s'] as number
    for (const row of rows) row['× 1 provider'] = (row['MiB/s'] as number) / single
    printTable(
      `bench/swarm: a ${options.sizeMib} MiB blob through one node's mirror, providers' uplinks ${options.uplinkMbit} Mbit/s (tc), verified before the first byte`,
      rows
    )
    console.log(
      'targets: 4 providers ≥ 3× one, 2 ≥ 1.8×, one slow provider never below one provider; memory per transfer ≤ 5 MiB + the blob client buffers'
    )
    console.log(`results: ${await writeResults('swarm', { options, rows })}`)
    return true
  } finally {
    await network.close()
    await rm(work, { recursive: true, force: true })
  }
}
