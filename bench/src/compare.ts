/**
 * bench/compare: Spegel and kadmirror side by side, same machine, same run. Spegel is built from its source
 * (../shared/anchors) and containerd 2.x from the Go module proxy. Everything runs in one network namespace the
 * benchmark makes, each mirror node on an address of its own (Spegel drops loopback addresses and dials every
 * peer's mirror on its own port, 5000): two Spegel nodes and two kadmirror nodes (the bundled daemon with its own
 * runtime settings), each beside a containerd of its own, an upstream registry behind a throttled proxy.
 *
 * Per implementation: node A pulls the images from upstream; node B then pulls them through its mirror from A
 * (`ctr images pull`, 20 MB and 100 MB images; the upstream throttled so that a fallback shows); a 40 MiB blob
 * through B's mirror from A (curl: MB/s and time to first byte); blob misses p50/p99 sequential and 8 concurrent;
 * RSS and private dirty memory of each mirror process idle, 5 s and 15 s after the pulls; CPU of both mirrors per
 * pulled GB.
 * kadmirror runs twice: as it ships (verify, then forward; with the containerd store a blob miss runs the flash-crowd
 * election, which Spegel does not have), and forwarding as bytes arrive with the election off (its miss rows are
 * the lookup path alone).
 * Prints a side-by-side table with ratios (kadmirror ÷ Spegel) and the targets, writes JSON.
 *
 * Needs root, iproute2, Go, curl, docker-registry, umoci and skopeo; prints why and exits otherwise.
 * Usage: node bench/src/compare.ts [--iterations 3] [--spegel main|v0.7.4] [--containerd 2|1.6]
 *   [--throttle-mbps 20] [--misses 200] [--kadmirror-arg=--flag=value ...]
 */
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { bundledCli } from '@kadmirror/test-support/daemons'
import {
  buildContainerd2,
  buildSpegel,
  goUnavailable,
  type SpegelVersion
} from '@kadmirror/test-support/go-builds'
import {
  buildAndPush,
  e2eUnavailable,
  type Host,
  mkdtemp,
  rm,
  startHost,
  startRegistry
} from '../../test/e2e/fixtures.ts'
import { type MirrorProcess, startKadmirrorPair, startSpegelPair } from './compare-nodes.ts'
import { hostsDir, throttleProxy } from './e2e.ts'
import { median, printTable, type Row, writeResults } from './report.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const INSIDE_ENV = 'KADMIRROR_COMPARE_INSIDE'

/** What one implementation measured. */
interface Measured {
  pull20: number[]
  pull100: number[]
  blobMBps: number[]
  blobTtfbMs: number[]
  missSequential: number[]
  missConcurrent: number[]
  upstreamBlobGets: number
  memory: Record<MemoryWhen, Record<'a' | 'b', Memory>>
  cpuSecondsPerGB: number
}

/** When memory is read: idle before the pulls, 5 s after them, and 15 s after them (settled). */
type MemoryWhen = 'idle' | 'after' | 'settled'

/** Memory of a process, in MiB: RSS, private dirty, and (a Node process, from its /metrics) V8's heap and external. */
interface Memory {
  rss: number
  privateDirty: number
  heapUsed?: number
  external?: number
}

async function memoryOf(process: MirrorProcess): Promise<Memory> {
  const rollup = await readFile(`/proc/${process.pid}/smaps_rollup`, 'utf8')
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1])
  const memory: Memory = { rss: kib('Rss') / 1024, privateDirty: kib('Private_Dirty') / 1024 }
  if (process.metricsUrl === undefined) return memory
  const text = await (await fetch(`${process.metricsUrl}/metrics`)).text()
  const gauge = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1]) / 2 ** 20
  return {
    ...memory,
    heapUsed: gauge('nodejs_heap_size_used_bytes'),
    external: gauge('nodejs_external_memory_bytes')
  }
}

/** CPU seconds (user + system) a process used so far. */
async function cpuSecondsOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11]) + Number(fields[12])) / 100
}

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

/** Times `count` blob misses through `mirror`, `concurrency` at a time; resolves each one's ms. */
async function misses(mirror: string, ns: string, count: number, concurrency: number): Promise<number[]> {
  const times: number[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next++ < count) {
      const digest = `sha256:${randomBytes(32).toString('hex')}`
      const started = performance.now()
      const res = await fetch(`${mirror}/v2/bench/img100/blobs/${digest}?ns=${ns}`)
      await res.arrayBuffer()
      times.push(performance.now() - started)
      if (res.status !== 404) throw new Error(`a miss answered ${res.status}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return times
}

/** One curl download of `url`: MB/s and time to first byte in ms. */
async function curlBlob(url: string): Promise<{ mbps: number; ttfbMs: number }> {
  const { stdout } = await run('curl', [
    '-sf',
    '-o',
    '/dev/null',
    '-w',
    '%{speed_download} %{time_starttransfer}',
    url
  ])
  const [speed, ttfb] = stdout.trim().split(' ').map(Number) as [number, number]
  return { mbps: speed / 1e6, ttfbMs: ttfb * 1000 }
}

/** The digest of the largest layer of `repository:tag` in `registry`. */
async function largestLayer(registry: string, repository: string, tag: string): Promise<string> {
  const res = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json' }
  })
  const manifest = (await res.json()) as { layers: { digest: string; size: number }[] }
  return [...manifest.layers].sort((a, b) => b.size - a.size)[0]?.digest as string
}

/** Waits until `mirror` answers HEAD for `repository:tag` (its peer's records have arrived). */
async function resolvable(mirror: string, ns: string, repository: string, tag: string): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const res = await fetch(`${mirror}/v2/${repository}/manifests/${tag}?ns=${ns}`, { method: 'HEAD' }).catch(
      () => undefined
    )
    if (res?.status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  throw new Error(`${mirror} never resolved ${repository}:${tag}`)
}

interface Setup {
  work: string
  registry: { host: string; requests: string[] }
  upstream: string
  binaries?: { containerd: string; ctr: string }
  spegel: string
  kadmirror: string
  iterations: number
  misses: number
  /** Flags added to every kadmirror node (`--kadmirror-arg`, repeatable). */
  kadmirrorArgs: readonly string[]
}

/** Runs one implementation's pair of nodes and measures it. */
async function measure(
  setup: Setup,
  kind: 'spegel' | 'kadmirror',
  base: number,
  extraArgs: readonly string[] = []
): Promise<Measured> {
  const { work, registry } = setup
  const hosts: Host[] = []
  let pair: MirrorProcess[] = []
  try {
    // containerd 2.x's ctr pulls through the transfer service unless --local; kubelet's CRI pulls as --local does.
    const binaries = setup.binaries === undefined ? undefined : { ...setup.binaries, local: true }
    const a = await startHost(work, `${kind}${base}-a`, binaries)
    const b = await startHost(work, `${kind}${base}-b`, binaries)
    hosts.push(a, b)
    const direct = await hostsDir(join(work, `${kind}${base}-direct`), registry.host, registry.host)
    for (const image of ['img20', 'img100']) await a.pull(`${registry.host}/bench/${image}:1`, direct)
    const addresses = [`192.0.2.${base + 1}`, `192.0.2.${base + 2}`] as const
    pair =
      kind === 'spegel'
        ? await startSpegelPair(setup.spegel, [a, b], addresses, work)
        : await startKadmirrorPair(setup.kadmirror, [a, b], addresses, work, [
            ...setup.kadmirrorArgs,
            ...extraArgs
          ])
    const [mirrorA, mirrorB] = pair as [MirrorProcess, MirrorProcess]
    for (const image of ['img20', 'img100'])
      await resolvable(mirrorB.url, registry.host, `bench/${image}`, '1')
    await new Promise((resolve) => setTimeout(resolve, 5000))
    const idle = { a: await memoryOf(mirrorA), b: await memoryOf(mirrorB) }

    const blob = await largestLayer(registry.host, 'bench/img100', '1')
    const blobs = []
    for (let i = 0; i < 5; i++)
      blobs.push(await curlBlob(`${mirrorB.url}/v2/bench/img100/blobs/${blob}?ns=${registry.host}`))
    const missSequential = await misses(mirrorB.url, registry.host, setup.misses, 1)
    const missConcurrent = await misses(mirrorB.url, registry.host, setup.misses * 2, 8)

    const viaMirror = await hostsDir(
      join(work, `${kind}${base}-mirror`),
      registry.host,
      setup.upstream,
      mirrorB.url
    )
    const upstreamBefore = registry.requests.filter(
      (r) => r.startsWith('GET') && r.includes('/blobs/')
    ).length
    const cpuBefore = (await cpuSecondsOf(mirrorA.pid)) + (await cpuSecondsOf(mirrorB.pid))
    const pulls: Record<string, number[]> = { img20: [], img100: [] }
    let pulledBytes = 0
    for (let i = 0; i < setup.iterations; i++) {
      for (const [image, size] of [
        ['img20', 20 * MiB],
        ['img100', 100 * MiB]
      ] as const) {
        await b.remove(`${registry.host}/bench/`)
        const started = performance.now()
        await b.pull(`${registry.host}/bench/${image}:1`, viaMirror)
        pulls[image]?.push((performance.now() - started) / 1000)
        pulledBytes += size
      }
    }
    const cpu = (await cpuSecondsOf(mirrorA.pid)) + (await cpuSecondsOf(mirrorB.pid)) - cpuBefore
    const upstreamBlobGets =
      registry.requests.filter((r) => r.startsWith('GET') && r.includes('/blobs/')).length - upstreamBefore
    await new Promise((resolve) => setTimeout(resolve, 5000))
    const after = { a: await memoryOf(mirrorA), b: await memoryOf(mirrorB) }
    await new Promise((resolve) => setTimeout(resolve, 10_000))
    const settled = { a: await memoryOf(mirrorA), b: await memoryOf(mirrorB) }
    return {
      pull20: pulls.img20 as number[],
      pull100: pulls.img100 as number[],
      blobMBps: blobs.map((x) => x.mbps),
      blobTtfbMs: blobs.map((x) => x.ttfbMs),
      missSequential,
      missConcurrent,
      upstreamBlobGets,
      memory: { idle, after, settled },
      cpuSecondsPerGB: cpu / (pulledBytes / 1e9)
    }
  } finally {
    await Promise.all(pair.map((p) => p.stop()))
    for (const host of hosts) await host.containerd.stop()
  }
}

/** The side-by-side rows: value for each, kadmirror ÷ Spegel, and the target where it has one. */
/** One row: Spegel's `s` and kadmirror's `k`, their ratio, the target, and (with no target) which is better. */
function row(what: string, s: number, k: number, target: string, better: 'lower' | 'higher'): Row {
  return {
    measurement: what,
    Spegel: s,
    kadmirror: k,
    'kadmirror ÷ Spegel': k / s,
    target,
    verdict:
      target === '—'
        ? better === 'lower'
          ? k <= s
            ? 'better or equal'
            : 'worse'
          : k >= s
            ? 'better or equal'
            : 'worse'
        : ''
  }
}

function rowsOf(spegel: Measured, ours: Measured, forwarding: Measured): Row[] {
  /** The larger of nodes A and B in `what` at `when`, Spegel's beside ours (memory is lower-is-better). */
  const memRow = (name: string, when: MemoryWhen, what: 'rss' | 'privateDirty', target: string): Row => {
    const of = (m: Measured) => Math.max(m.memory[when].a[what], m.memory[when].b[what])
    return row(name, of(spegel), of(ours), target, 'lower')
  }
  const rows: Row[] = [
    memRow('RSS per node idle, MiB (max of A, B)', 'idle', 'rss', '≤ 1.5×'),
    memRow('RSS per node 5 s after the pulls, MiB', 'after', 'rss', '≤ 96 MiB'),
    memRow('RSS per node 15 s after the pulls, MiB', 'settled', 'rss', '≤ 96 MiB'),
    memRow('private dirty idle, MiB', 'idle', 'privateDirty', '—'),
    memRow('private dirty 5 s after the pulls, MiB', 'after', 'privateDirty', '—'),
    row('20 MB image from a peer, s (p50)', median(spegel.pull20), median(ours.pull20), '—', 'lower'),
    row('100 MB image from a peer, s (p50)', median(spegel.pull100), median(ours.pull100), '≤ 1.0×', 'lower'),
    row(
      '40 MiB blob through the mirror from a peer, MB/s (p50)',
      median(spegel.blobMBps),
      median(ours.blobMBps),
      '≥ 1.0×',
      'higher'
    ),
    row(
      '  its time to first byte, ms (p50)',
      median(spegel.blobTtfbMs),
      median(ours.blobTtfbMs),
      '≤ 1.0×',
      'lower'
    ),
    ...missRows(spegel, ours, ''),
    row('CPU of both mirrors per pulled GB, s', spegel.cpuSecondsPerGB, ours.cpuSecondsPerGB, '—', 'lower'),
    row(
      'forwarding: 40 MiB blob from a peer, MB/s (p50)',
      median(spegel.blobMBps),
      median(forwarding.blobMBps),
      '≥ 1.0×',
      'higher'
    ),
    row(
      'forwarding:   its time to first byte, ms (p50)',
      median(spegel.blobTtfbMs),
      median(forwarding.blobTtfbMs),
      '≤ 1.0×',
      'lower'
    ),
    row(
      'forwarding: 100 MB image from a peer, s (p50)',
      median(spegel.pull100),
      median(forwarding.pull100),
      '≤ 1.0×',
      'lower'
    ),
    row('forwarding: CPU per pulled GB, s', spegel.cpuSecondsPerGB, forwarding.cpuSecondsPerGB, '—', 'lower'),
    ...missRows(spegel, forwarding, 'no election (forwarding pair, --flash-crowd=false): '),
    row(
      'blob GETs that reached upstream during peer pulls',
      spegel.upstreamBlobGets,
      ours.upstreamBlobGets,
      '0',
      'lower'
    )
  ]
  for (const r of rows) {
    const ratio = r['kadmirror ÷ Spegel'] as number
    const k = r.kadmirror as number
    if (r.target === '≤ 1.5×') r.verdict = ratio <= 1.5 ? 'met' : 'NOT met'
    else if (r.target === '≤ 1.0×') r.verdict = ratio <= 1.0 ? 'met' : 'NOT met'
    else if (r.target === '≥ 1.0×') r.verdict = ratio >= 1.0 ? 'met' : 'NOT met'
    else if (r.target === '≤ 96 MiB') r.verdict = k <= 96 ? 'met' : 'NOT met'
    else if (r.target === '0') r.verdict = k === 0 ? 'met' : 'NOT met'
  }
  return rows
}

/** Blob miss p50 and p99, sequential and 8 concurrent, of `ours` beside Spegel's; `label` goes before each name. */
function missRows(spegel: Measured, ours: Measured, label: string): Row[] {
  const rows: Row[] = []
  for (const [what, of] of [
    ['sequential', (m: Measured) => m.missSequential],
    ['8 concurrent', (m: Measured) => m.missConcurrent]
  ] as const) {
    for (const p of [50, 99]) {
      const target = p === 99 && what === '8 concurrent' ? '≤ 1.0×' : '—'
      const name = `${label}blob miss p${p}, ms, ${what}`
      rows.push(row(name, percentile(of(spegel), p), percentile(of(ours), p), target, 'lower'))
    }
  }
  return rows
}

/** A kadmirror node's memory by part: RSS, private dirty, V8 heap in use, external; node A and B, idle, after, settled. */
function memoryRows(m: Measured): Row[] {
  const label: Record<MemoryWhen, string> = { idle: 'idle', after: '5 s after', settled: '15 s after' }
  return (['idle', 'after', 'settled'] as const).flatMap((when) =>
    (['a', 'b'] as const).map((node) => {
      const x = m.memory[when][node]
      return {
        node: `${node.toUpperCase()} ${label[when]}`,
        RSS: x.rss,
        'private dirty': x.privateDirty,
        'V8 heap used': x.heapUsed ?? Number.NaN,
        external: x.external ?? Number.NaN
      }
    })
  )
}

/** The command line's values. */
interface CompareValues {
  iterations: string
  spegel: string
  containerd: string
  'throttle-mbps': string
  misses: string
  binaries?: string
  'spegel-binary'?: string
  'kadmirror-cli'?: string
  'kadmirror-arg': string[]
}

/** Inside the namespace: the whole comparison. */
async function inside(values: CompareValues): Promise<boolean> {
  await run('ip', ['link', 'set', 'lo', 'up'])
  for (const host of [11, 12, 21, 22, 31, 32])
    await run('ip', ['addr', 'add', `192.0.2.${host}/32`, 'dev', 'lo'])
  const work = await mkdtemp(join(tmpdir(), 'kadmirror-bench-compare-'))
  const registry = await startRegistry(work)
  const proxy = await throttleProxy(
    { host: '127.0.0.1', port: Number(registry.host.split(':')[1]) },
    Number(values['throttle-mbps']) * 1e6
  )
  try {
    console.error('bench/compare: building the images…')
    await buildAndPush(
      work,
      registry.host,
      'bench/img20',
      '1',
      [8, 6, 4, 2].map((m) => m * MiB)
    )
    await buildAndPush(
      work,
      registry.host,
      'bench/img100',
      '1',
      [40, 20, 15, 10, 10, 5].map((m) => m * MiB)
    )
    const setup: Setup = {
      work,
      registry,
      upstream: proxy.address,
      ...(values.containerd === '1.6' ? {} : { binaries: JSON.parse(values.binaries as string) }),
      spegel: values['spegel-binary'] as string,
      kadmirror: values['kadmirror-cli'] as string,
      iterations: Number(values.iterations),
      misses: Number(values.misses),
      kadmirrorArgs: values['kadmirror-arg']
    }
    console.error('bench/compare: Spegel…')
    const spegel = await measure(setup, 'spegel', 10)
    console.error('bench/compare: kadmirror…')
    const ours = await measure(setup, 'kadmirror', 20)
    console.error('bench/compare: kadmirror forwarding blobs as they arrive, no flash-crowd election…')
    const forwarding = await measure(setup, 'kadmirror', 30, [
      '--verify-before-forwarding=false',
      '--flash-crowd=false'
    ])
    const rows = rowsOf(spegel, ours, forwarding)
    printTable(
      `bench/compare: Spegel ${values.spegel} and kadmirror, containerd ${values.containerd}, one namespace, 2 nodes each (${setup.iterations} pulls per image)`,
      rows
    )
    printTable(
      "where a kadmirror node's memory is (MiB; V8 heap in use and external from its /metrics)",
      memoryRows(ours)
    )
    const raw = { spegel, kadmirror: ours, forwarding }
    const data = { spegel: values.spegel, containerd: values.containerd, rows, raw }
    console.log(`wrote ${await writeResults('compare', data)}`)
    return rows.every((r) => r.verdict !== 'NOT met')
  } finally {
    await proxy.close()
    await registry.stop()
    await rm(work, { recursive: true, force: true })
  }
}

/** Runs bench/compare: builds what it needs, makes the namespace, runs itself inside it, removes the namespace. */
export async function benchCompare(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: {
      iterations: { type: 'string', default: '3' },
      spegel: { type: 'string', default: 'main' },
      containerd: { type: 'string', default: '2' },
      'throttle-mbps': { type: 'string', default: '20' },
      misses: { type: 'string', default: '200' },
      binaries: { type: 'string' },
      'spegel-binary': { type: 'string' },
      'kadmirror-cli': { type: 'string' },
      'kadmirror-arg': { type: 'string', multiple: true, default: [] }
    }
  })
  if (process.env[INSIDE_ENV] === '1') return inside(values)
  const why = e2eUnavailable() ?? (await goUnavailable())
  if (why !== undefined) {
    console.log(`bench/compare skipped: ${why}`)
    return true
  }
  if (values.spegel !== 'main' && values.spegel !== 'v0.7.4') {
    console.error('bench/compare: --spegel takes main or v0.7.4')
    return false
  }
  if (values.containerd !== '2' && values.containerd !== '1.6') {
    console.error('bench/compare: --containerd takes 2 or 1.6')
    return false
  }
  console.error('bench/compare: building Spegel and containerd 2.x (cached after the first run)…')
  const spegelBinary = await buildSpegel(values.spegel as SpegelVersion)
  const binaries = values.containerd === '2' ? await buildContainerd2() : undefined
  const cli = await bundledCli()
  const namespace = `kadmirror-compare-${process.pid}`
  await run('ip', ['netns', 'add', namespace])
  try {
    const child = spawn(
      'ip',
      [
        ...['netns', 'exec', namespace, process.execPath, fileURLToPath(import.meta.url), ...args],
        ...(binaries === undefined ? [] : [`--binaries=${JSON.stringify(binaries)}`]),
        `--spegel-binary=${spegelBinary}`,
        `--kadmirror-cli=${cli}`
      ],
      { stdio: 'inherit', env: { ...process.env, [INSIDE_ENV]: '1' } }
    )
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    return code === 0
  } finally {
    await run('ip', ['netns', 'del', namespace]).catch(() => {})
  }
}

if (import.meta.main) process.exitCode = (await benchCompare(process.argv.slice(2))) ? 0 : 1
