/**
 * bench/sim: the routing design for large clusters (full membership by gossip, bounded connections, one-round
 * lookups, records at the closest members) run on a virtual network, with the router's own membership,
 * placement and lookup code (@kadmirror/routing/membership), for N simulated nodes in one process.
 *
 * Phases, one after the other on one cluster: steady lookups; churn (members leave — half cleanly, half
 * crashing — and as many join, at `--churn` % of N a minute) with lookups; a partition into two halves that
 * heals (an island of `--island` nodes, default min(N/2, 100): a rack cut off), with lookups during and after. Reports connections per node, lookup hops and latency (from the model),
 * records per node, bytes and dials per node per second, how long news of a crash, a leave or a join takes to
 * reach 99 % of the nodes, how long a joining node takes to be usable, and lookup success.
 *
 * `--partition-s 0` leaves the partition out (at 10 000 nodes its healing storm — every node refuting the death the
 * other side declared, as SWIM does — needs more memory than one simulator process has).
 *
 * Usage: node bench/src/run.ts sim -- [--sizes 1000,10000] [--steady-s 30] [--churn-min 3] [--churn 1]
 *   [--partition-s 120] [--island 100] [--lookups-per-s 100] [--keys 10] [--dial-cpu-ms 4] [--latency-ms 0.1] [--seed 1]
 *   [--near 16] [--random 8] [--max-connections 64] [--datagrams true]
 *
 * `--datagrams false`: lookups dial members they have no connection to (as the router with `datagramLookups: false`);
 * by default they ask them in one datagram each way, as the router in gossip mode does.
 */
import { parseArgs } from 'node:util'
import { percentile, printTable, type Row, writeResults } from './report.ts'
import { type LookupSample, SimCluster, type Spread } from './sim/cluster.ts'
import { DEFAULT_MODEL, DEFAULT_SETTINGS } from './sim/defaults.ts'

/** Targets of the routing-at-scale issue. */
const TARGETS = { maxConnections: 64, lookupP99Ms: 25 }

const round = (value: number, digits = 2): number => Number(value.toFixed(digits))

/** The share of the lookups' asks that `count` counts, in %. */
const shareOfAsks = (samples: LookupSample[], count: (s: LookupSample) => number): number =>
  round(
    (100 * samples.reduce((sum, s) => sum + count(s), 0)) /
      Math.max(
        1,
        samples.reduce((sum, s) => sum + s.asked, 0)
      )
  )

/** One row for the lookups of a phase. */
function lookupRow(size: number, phase: string, samples: LookupSample[]): Row {
  const hits = samples.filter((s) => s.hit)
  const misses = samples.filter((s) => !s.hit)
  const firsts = hits.flatMap((s) => (s.firstMs === undefined ? [] : [s.firstMs]))
  return {
    nodes: size,
    phase,
    lookups: samples.length,
    'hits found %': round((100 * hits.filter((s) => s.ok).length) / Math.max(1, hits.length)),
    'stale found': samples.reduce((sum, s) => sum + s.stale, 0),
    'hops p50/p99/max': `${percentile(
      samples.map((s) => s.hops),
      50
    )}/${percentile(
      samples.map((s) => s.hops),
      99
    )}/${Math.max(0, ...samples.map((s) => s.hops))}`,
    'first ms p50': round(percentile(firsts, 50)),
    'first ms p99': round(percentile(firsts, 99)),
    'miss ms p50': round(
      percentile(
        misses.map((s) => s.doneMs),
        50
      )
    ),
    'miss ms p99': round(
      percentile(
        misses.map((s) => s.doneMs),
        99
      )
    ),
    'asks dialled %': shareOfAsks(samples, (s) => s.dialled),
    'asks by datagram %': shareOfAsks(samples, (s) => s.datagrams)
  }
}

/** Connections, records, bytes and dials per node over a phase. */
function nodeRow(cluster: SimCluster, size: number, phase: string, since: PhaseStart): Row {
  const live = cluster.liveNodes()
  const seconds = (cluster.clock.now() - since.at) / 1000
  const connections = live.map((node) => node.connections.size)
  const records = live.map((node) => [...node.held.values()].reduce((sum, set) => sum + set.size, 0))
  const bytes = live.map(
    (node) => ((cluster.net.sentBytes.get(node.id) ?? 0) - (since.bytes.get(node.id) ?? 0)) / seconds
  )
  return {
    nodes: size,
    phase,
    'virtual s': round(seconds, 1),
    'connections p50/p99/max': `${percentile(connections, 50)}/${percentile(connections, 99)}/${Math.max(...connections)}`,
    'records p50/max': `${percentile(records, 50)}/${Math.max(...records)}`,
    'sent B/s/node mean': round(bytes.reduce((a, b) => a + b, 0) / live.length, 0),
    'sent B/s/node max': round(Math.max(...bytes), 0),
    'dials/s/node': round((cluster.net.dials - since.dials) / seconds / live.length, 3),
    'trims/s/node': round((totalTrims(cluster) - since.trims) / seconds / live.length, 3)
  }
}

interface PhaseStart {
  at: number
  bytes: Map<string, number>
  dials: number
  trims: number
}

const totalTrims = (cluster: SimCluster): number =>
  [...cluster.net.nodes.values()].reduce((sum, node) => sum + node.trims, 0)

const phaseStart = (cluster: SimCluster): PhaseStart => ({
  at: cluster.clock.now(),
  bytes: new Map(cluster.net.sentBytes),
  dials: cluster.net.dials,
  trims: totalTrims(cluster)
})

function spreadRow(size: number, spreads: Spread[]): Row {
  const row: Row = { nodes: size }
  for (const kind of ['crash', 'leave', 'join'] as const) {
    const of = spreads.filter((s) => s.kind === kind)
    const ms = of.flatMap((s) => (s.ms === undefined ? [] : [s.ms / 1000]))
    row[`${kind}s`] = of.length
    row[`${kind} to 99% s p50/p99`] = `${round(percentile(ms, 50))}/${round(percentile(ms, 99))}`
    row[`${kind} not spread`] = of.length - ms.length
  }
  const usable = spreads.flatMap((s) => (s.usableMs === undefined ? [] : [s.usableMs]))
  row['join usable ms p50/max'] = `${round(percentile(usable, 50))}/${round(Math.max(0, ...usable))}`
  return row
}

interface SizeResult {
  lookups: Row[]
  nodes: Row[]
  spread: Row
  healSeconds: number | undefined
  wallSeconds: number
  rssMiB: number
}

async function runPhase(
  cluster: SimCluster,
  size: number,
  phase: string,
  ms: number,
  options: { lookupsPerS: number },
  rows: { lookups: Row[]; nodes: Row[] },
  before?: () => void
): Promise<void> {
  const since = phaseStart(cluster)
  const first = cluster.lookups.length
  before?.()
  cluster.lookupLoad(phase, options.lookupsPerS, 0.8, ms)
  await cluster.run(ms + 2000)
  if (process.env.SIM_DEBUG !== undefined)
    console.log(
      phase,
      `${(performance.now() / 1000).toFixed(1)} s`,
      `heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`,
      cluster.debugCounts()
    )
  rows.lookups.push(lookupRow(size, phase, cluster.lookups.slice(first)))
  rows.nodes.push(nodeRow(cluster, size, phase, since))
}

async function simulate(size: number, o: ReturnType<typeof options>): Promise<SizeResult> {
  const started = performance.now()
  const cluster = new SimCluster(o.settings, o.model, o.keys, o.seed)
  cluster.build(size)
  const rows = { lookups: [] as Row[], nodes: [] as Row[] }
  await runPhase(cluster, size, 'steady', o.steadyMs, o, rows)
  const churnPerMinute = (size * o.churnPercent) / 100
  await runPhase(cluster, size, 'churn', o.churnMs, o, rows, () => cluster.churn(churnPerMinute, o.churnMs))
  await cluster.run(30_000) // news of the last churn settles
  if (o.partitionMs === 0) return finish(cluster, size, rows, undefined, started)
  await runPhase(cluster, size, 'partitioned', o.partitionMs, o, rows, () =>
    cluster.partition(o.partitionMs, o.island ?? Math.min(size / 2, 100))
  )
  let healSeconds: number | undefined
  const healedAt = cluster.clock.now()
  for (let waited = 0; waited < 300_000; waited += 1000) {
    if (cluster.converged()) {
      healSeconds = (cluster.clock.now() - healedAt) / 1000
      break
    }
    await cluster.run(1000)
  }
  await runPhase(cluster, size, 'healed', 30_000, o, rows)
  return finish(cluster, size, rows, healSeconds, started)
}

function finish(
  cluster: SimCluster,
  size: number,
  rows: { lookups: Row[]; nodes: Row[] },
  healSeconds: number | undefined,
  started: number
): SizeResult {
  return {
    ...rows,
    spread: spreadRow(size, cluster.spreads),
    healSeconds,
    wallSeconds: round((performance.now() - started) / 1000, 1),
    rssMiB: round(process.memoryUsage().rss / 2 ** 20, 0)
  }
}

function options(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      sizes: { type: 'string', default: '1000,10000' },
      'steady-s': { type: 'string', default: '30' },
      'churn-min': { type: 'string', default: '3' },
      churn: { type: 'string', default: '1' },
      'partition-s': { type: 'string', default: '120' },
      island: { type: 'string' },
      'lookups-per-s': { type: 'string', default: '100' },
      keys: { type: 'string', default: '10' },
      'dial-cpu-ms': { type: 'string', default: String(DEFAULT_MODEL.dialCpuMs) },
      'latency-ms': { type: 'string', default: String(DEFAULT_MODEL.latencyMs) },
      seed: { type: 'string', default: '1' },
      near: { type: 'string', default: String(DEFAULT_SETTINGS.near) },
      random: { type: 'string', default: String(DEFAULT_SETTINGS.random) },
      'max-connections': { type: 'string', default: String(DEFAULT_SETTINGS.maxConnections) },
      datagrams: { type: 'string', default: String(DEFAULT_SETTINGS.datagrams) }
    }
  })
  const number = (name: keyof typeof values): number => {
    const value = Number(values[name])
    if (!Number.isFinite(value) || value < 0)
      throw new Error(`--${name} must be a number ≥ 0, not ${values[name]}`)
    return value
  }
  return {
    sizes: String(values.sizes).split(',').map(Number),
    steadyMs: number('steady-s') * 1000,
    churnMs: number('churn-min') * 60_000,
    churnPercent: number('churn'),
    partitionMs: number('partition-s') * 1000,
    island: values.island === undefined ? undefined : number('island'),
    lookupsPerS: number('lookups-per-s'),
    keys: number('keys'),
    seed: number('seed'),
    settings: {
      ...DEFAULT_SETTINGS,
      near: number('near'),
      random: number('random'),
      maxConnections: number('max-connections'),
      datagrams: flag(values.datagrams)
    },
    model: { ...DEFAULT_MODEL, dialCpuMs: number('dial-cpu-ms'), latencyMs: number('latency-ms') }
  }
}

/** A `true`/`false` option. @throws {Error} for anything else. */
function flag(value: string | undefined): boolean {
  if (value !== 'true' && value !== 'false')
    throw new Error(`--datagrams must be true or false, not ${value}`)
  return value === 'true'
}

/** Runs the simulator for each size; prints tables and writes bench/results/sim.json. */
export async function benchSim(args: string[]): Promise<boolean> {
  const o = options(args)
  const results: Record<number, SizeResult> = {}
  for (const size of o.sizes) {
    results[size] = await simulate(size, o)
    const r = results[size] as SizeResult
    console.log(
      `${size} nodes: ${r.wallSeconds} s of wall time, RSS ${r.rssMiB} MiB, heal ${r.healSeconds ?? 'not within 300'} s`
    )
  }
  const all = Object.values(results)
  printTable(
    'bench/sim: lookups (latency from the network model)',
    all.flatMap((r) => r.lookups)
  )
  printTable(
    'bench/sim: per node',
    all.flatMap((r) => r.nodes)
  )
  printTable(
    'bench/sim: news of members reaching 99 % of the nodes',
    all.map((r) => r.spread)
  )
  printTable(
    'bench/sim: partition healing',
    Object.entries(results).map(([size, r]) => ({
      nodes: Number(size),
      'converged after heal s': o.partitionMs === 0 ? 'no partition' : (r.healSeconds ?? 'no')
    }))
  )
  const path = await writeResults('sim', {
    settings: o.settings,
    model: o.model,
    targets: TARGETS,
    options: { ...o, settings: undefined, model: undefined },
    results
  })
  console.log(`\nwrote ${path}`)
  return true
}
