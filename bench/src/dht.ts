/**
 * bench/dht: the libp2p router on real libp2p nodes over TCP on 127.0.0.1.
 *
 * In-process clusters (all nodes share one event loop, so every hop looks slower than on real hosts) of
 * N = 10, 50, 100, 200 nodes, each in a fresh process of its own, and a cluster with one process per node. For each: time to advertise 1 key and
 * 10 000 keys, time to first provider over 200+ lookups, time to learn that nobody has a key, RSS per node,
 * and CPU to reprovide 10 000 keys. Stock `@libp2p/kad-dht` lookups (its own multi-hop query, default
 * options) on the same cluster are measured alongside for reference.
 *
 * `--membership mesh,gossip`: in-process clusters in each mode (the router's `membership` option), with connections
 * per node in both.
 *
 * Usage: node --expose-gc bench/src/dht.ts [--sizes 10,50,100,200] [--lookups 200] [--keys 10000] [--processes 8]
 *   [--split 10x10] [--stock-lookups 50] [--buffer-pool-kib 0] [--v8-flags '--heap-growing-percent=20']
 *
 * `--v8-flags`: V8 options for the processes that run nodes (say, to bound heap growth), shown in each row.
 * `--processes N`: N nodes, one process each. `--split PxN`: P processes with N nodes each (100 nodes as 10 × 10
 * spreads the event-loop load the way hosts do, where 100 processes would not even form on a small machine).
 */
import { fork } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createLibp2pRouter, keyToCid, type Libp2pRouter, staticBootstrapper } from '@kadmirror/routing'
import { waitFor } from '@kadmirror/test-support'
import { percentile, printTable, type Row, writeResults } from './report.ts'

/**
 * Buffer pool size the nodes run with, in KiB. Node 24 raised `Buffer.poolSize` to 64 KiB; libp2p keeps small
 * views into pool slabs for as long as a connection lives (peer ids, multiaddrs, Kademlia distances decoded from
 * the wire), so each connection pins slabs. Without a pool (0) each small buffer has its own memory: at 100 nodes
 * in one process 0.37 MiB of external memory per node against 1.19 with 8 KiB slabs, lookups as fast. 0 is what a
 * kadmirror process should set.
 */
const RECOMMENDED_BUFFER_POOL_KIB = 0

/** Targets of the routing issues, at 100 nodes (10 000 keys at 50). */
const TARGETS = {
  hitP50Ms: 5,
  hitP99Ms: 25,
  missP99Ms: 25,
  advertise10kMs: 30_000,
  rssPerNodeMiB: 6,
  /** Gossip membership: most connections a node holds (the default `peerConnections`). */
  gossipConnections: 64
}

/** This process's limit on open files (Linux, from /proc/self/limits), or undefined where it cannot be read. */
async function openFilesLimit(): Promise<number | undefined> {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(await readFile('/proc/self/limits', 'utf8'))
    return match === null ? undefined : Number(match[1])
  } catch {
    return undefined
  }
}

/**
 * Open files a process needs to hold `local` nodes of a full mesh of `size`: a socket per connection of each (a
 * pair of nodes in the same process holds both ends), a listener each, and room for Node itself.
 */
function openFilesNeeded(local: number, size: number): number {
  return local * size + 256
}

/**
 * A full GC (with `--expose-gc`). `compact`: V8's collection of all available garbage instead, as its memory
 * reducer runs when a process goes quiet and as a heap snapshot does: full GCs repeated until weak callbacks free
 * no more, compacting, and returning free pages to the OS.
 *
 * Only that second kind reads what the nodes hold. A single full GC of a cluster that has just formed leaves
 * garbage that later collections free layer by layer (objects reachable only through native wrappers, freed by
 * weak callbacks after the GC that found the wrappers dead): at 20 nodes 3.3 MiB per node after one, 0.86 after a
 * collection of all available garbage; at 50, 8.5 after one, 1.5 after a second a second later; at 100, a few
 * more rounds a second apart still read 6.7.
 */
function gc(compact = false): void {
  const run = (globalThis as { gc?: (options?: NodeJS.GCOptions) => void }).gc
  run?.(compact ? { type: 'major', execution: 'sync', flavor: 'last-resort' } : undefined)
}

/** Memory that counts as held by the nodes: the JS heap in use and external (array buffer) memory, in bytes. */
const liveBytes = (): number => {
  const memory = process.memoryUsage()
  return memory.heapUsed + memory.external
}

const randomKey = (): string =>
  `sha256:${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')}`
const now = (): number => performance.now()

/** Time until the first provider, or until the lookup ends (a miss). */
async function timeLookup(router: Libp2pRouter, key: string): Promise<LookupResult> {
  const start = now()
  for await (const _ of router.lookup(key, { count: 1 })) return { ms: now() - start, found: true }
  return { ms: now() - start, found: false }
}

/** The same with the stock kad-dht query (`findProviders`), stopping at the first provider. */
async function timeStockLookup(router: Libp2pRouter, key: string): Promise<LookupResult> {
  const start = now()
  const signal = AbortSignal.timeout(10_000)
  try {
    for await (const event of router.libp2p.services.dht.findProviders(keyToCid(key), { signal })) {
      if (event.name === 'PROVIDER' && event.providers.some((p) => !p.id.equals(router.libp2p.peerId))) {
        return { ms: now() - start, found: true }
      }
    }
  } catch {
    // a timed-out stock query counts as a miss at its duration
  }
  return { ms: now() - start, found: false }
}

interface LookupResult {
  ms: number
  found: boolean
}

/** Looks each key up once from a random node other than its owner; times of the lookups that found it. */
async function timeHits<T>(
  keys: ReadonlyArray<{ key: string; owner: T }>,
  pick: () => T,
  time: (node: T, key: string) => Promise<LookupResult>
): Promise<{ times: number[]; found: number }> {
  const times: number[] = []
  for (const { key, owner } of keys) {
    let from = pick()
    while (from === owner) from = pick()
    const result = await time(from, key)
    if (result.found) times.push(result.ms)
  }
  return { times, found: times.length }
}

/** Looks `count` keys nobody has up from random nodes; times until each lookup ended. */
async function timeMisses<T>(
  count: number,
  pick: () => T,
  time: (node: T, key: string) => Promise<LookupResult>
): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < count; i++) times.push((await time(pick(), randomKey())).ms)
  return times
}

/** A node's bootstrap entries: each of its multiaddrs with its peer id. */
const seedOf = (peerId: string, addresses: readonly string[]): string[] =>
  addresses.map((a) => `${a}/p2p/${peerId}`)

/**
 * Starts one more router bootstrapped from `seed` into a formed cluster of `size` and times it: until its view
 * holds every member, and until a lookup from it finds `key`'s provider (usable), in ms.
 */
async function timeJoin(
  seed: string[],
  size: number,
  key: string,
  membership: Membership
): Promise<{ router: Libp2pRouter; viewMs: number; usableMs: number }> {
  const start = now()
  const [router] = (await startRouters(1, seed, membership)) as [Libp2pRouter]
  let usableMs: number | undefined
  let viewMs: number | undefined
  const deadline = Date.now() + 120_000
  while (usableMs === undefined || viewMs === undefined) {
    if (Date.now() > deadline) throw new Error('the joining node was not usable within 120 s')
    if (viewMs === undefined && router.peers().length === size) viewMs = now() - start
    if (usableMs === undefined) {
      for await (const _ of router.lookup(key, { count: 1, fresh: true })) usableMs = now() - start
    }
    if (usableMs === undefined || viewMs === undefined)
      await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return { router, viewMs, usableMs }
}

/** Rounds of the network lookups the routers run (from their `lookup` events). */
function recordRounds(routers: readonly Libp2pRouter[], into: number[]): void {
  for (const router of routers)
    router.events.on('lookup', (event) => {
      if (event.source === 'network' && event.providers > 0) into.push(event.rounds)
    })
}

/** The lookup columns of a result row: first-provider and miss percentiles, in ms. */
function lookupColumns(hits: number[], found: number, misses: number[], lookups: number) {
  return {
    'hit p50 ms': percentile(hits, 50),
    'hit p95 ms': percentile(hits, 95),
    'hit p99 ms': percentile(hits, 99),
    'hits found': `${found}/${lookups}`,
    'miss p50 ms': percentile(misses, 50),
    'miss p99 ms': percentile(misses, 99)
  }
}

/** The rounds and join columns of a result row. */
function joinColumns(rounds: number[], join: { viewMs: number; usableMs: number }) {
  return {
    'hit rounds p50/max': `${percentile(rounds, 50)}/${Math.max(...rounds)}`,
    'join: view full ms': join.viewMs,
    'join: finds a key ms': join.usableMs
  }
}

interface ClusterResult extends Row {
  mode: string
  nodes: number
  /** Open connections per node once formed and settled, and after the advertising and lookups (mean/max). */
  'conns/node formed mean/max': string
  'conns/node after mean/max': string
  'form s': number
  'adv 1 key ms': number
  'adv 10k keys ms': number
  'hit p50 ms': number
  'hit p95 ms': number
  'hit p99 ms': number
  'hits found': string
  'miss p50 ms': number
  'miss p99 ms': number
  /** Rounds of the lookups that found a provider (1: only the closest members were asked). */
  'hit rounds p50/max': string
  /** A node that joins the formed cluster: until its view holds every member, in ms. */
  'join: view full ms': number
  /** The same node: until a lookup from it finds a key that a member advertised, in ms. */
  'join: finds a key ms': number
  'RSS/node MiB': number
  /**
   * RSS per node at the end, after V8 collected all available garbage and returned free pages (what a quiet
   * process comes down to): without the pages V8 keeps after the garbage of forming the mesh.
   */
  'RSS/node compacted MiB': number | string
  /** Live JS heap plus external memory per node, at the end with RSS compacted: what the nodes hold. */
  'live/node MiB': number | string
  /** RSS of a child process before any router started (multi-process rows; '—' in one process). */
  'bare process MiB': number | string
  'reprovide 10k CPU ms': number
  /** V8 options of the processes that ran the nodes ('—': V8's defaults). */
  'V8 flags': string
}

/**
 * How long after the mesh forms memory is measured, in ms: forming's peer exchange runs until 10 s after a view
 * last grew, and its garbage is still around before that.
 */
const SETTLE_MS = 10_000

/**
 * Starts `count` routers on 127.0.0.1, 25 at a time, that bootstrap from `seed` (multiaddrs with peer ids);
 * without `seed`, the first router starts alone and seeds the others.
 */
async function startRouters(
  count: number,
  seed?: string[],
  membership: Membership = 'mesh'
): Promise<Libp2pRouter[]> {
  // The first node bootstraps from the seed (another process's first node) when given; the others from the first.
  // One seed for every node of a large cluster times its own dials out (500 nodes on 2 cores never formed); a DNS
  // bootstrapper answers several addresses, so nodes of a real cluster spread over several too.
  const first = await createLibp2pRouter({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    ...(seed === undefined ? {} : { bootstrapper: staticBootstrapper(seed) }),
    membership
  })
  const routers: Libp2pRouter[] = [first]
  const peers = seedOf(first.peerId, first.addresses())
  while (routers.length < count) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(25, count - routers.length) }, () =>
        createLibp2pRouter({
          listen: ['/ip4/127.0.0.1/tcp/0'],
          allowLoopback: true,
          bootstrapper: staticBootstrapper(peers),
          membership
        })
      )
    )
    routers.push(...batch)
  }
  return routers
}

/** How the routers know the cluster (the router's `membership` option). */
type Membership = 'mesh' | 'gossip'

async function inProcess(
  size: number,
  lookups: number,
  keyCount: number,
  stockLookups: number,
  membership: Membership = 'mesh'
): Promise<{ ours: ClusterResult; stock: Row }> {
  gc(true)
  const rssBefore = process.memoryUsage().rss
  const liveBefore = liveBytes()
  const formStart = now()
  const nodes = await startRouters(size, undefined, membership)
  try {
    await waitFor(
      () => nodes.every((n) => n.peers().length === size - 1),
      size * 10_000,
      `a full mesh of ${size}`
    )
    const formSeconds = (now() - formStart) / 1000
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const formed = connectionsOf(nodes.map((n) => n.libp2p.getConnections().length))
    // RSS of the settled cluster after a full GC (which also clears most of the garbage of forming the mesh, so
    // the lookups below do not pay for collecting it). The collection of all available garbage, which reads live
    // memory, comes last: the GCs that follow while V8 regrows a compacted heap would slow whatever is measured next.
    gc()
    const rssPerNode = (process.memoryUsage().rss - rssBefore) / size / 1024 / 1024
    const pick = (): Libp2pRouter => nodes[Math.floor(Math.random() * nodes.length)] as Libp2pRouter

    // Advertising.
    let start = now()
    await pick().advertise([randomKey()])
    const advertiseOneMs = now() - start
    const bulk = Array.from({ length: keyCount }, randomKey)
    const bulkOwner = pick()
    start = now()
    await bulkOwner.advertise(bulk)
    const advertiseBulkMs = now() - start
    // A reprovide sends the same records again; its CPU is what each TTL costs the whole cluster (one process here).
    const reprovideStart = process.cpuUsage()
    await bulkOwner.advertise(bulk)
    const reprovide = process.cpuUsage(reprovideStart)

    // Hits: distinct keys, each advertised by a random node, looked up once from another random node.
    const hitKeys = Array.from({ length: lookups }, () => ({ key: randomKey(), owner: pick() }))
    for (const { key, owner } of hitKeys) await owner.advertise([key])
    const rounds: number[] = []
    recordRounds(nodes, rounds)
    const { times: hits, found } = await timeHits(hitKeys, pick, timeLookup)
    const misses = await timeMisses(lookups, pick, timeLookup)

    // Stock kad-dht queries on the same cluster, for reference.
    const { times: stockHits, found: stockFound } = await timeHits(
      hitKeys.slice(0, stockLookups),
      pick,
      timeStockLookup
    )
    const stockMisses = await timeMisses(stockLookups, pick, timeStockLookup)
    gc(true)
    const compactedPerNode = (process.memoryUsage().rss - rssBefore) / size / 1024 / 1024
    const livePerNode = (liveBytes() - liveBefore) / size / 1024 / 1024
    const after = connectionsOf(nodes.map((n) => n.libp2p.getConnections().length))
    // A node joining the formed cluster (after the memory readings, which count the cluster's nodes only).
    const seeder = pick()
    const join = await timeJoin(
      seedOf(seeder.peerId, seeder.addresses()),
      size,
      (hitKeys[0] as { key: string }).key,
      membership
    )
    nodes.push(join.router)
    const ours: ClusterResult = {
      mode: membership === 'mesh' ? 'in-process' : 'in-process gossip',
      nodes: size,
      'conns/node formed mean/max': formed,
      'conns/node after mean/max': after,
      'form s': formSeconds,
      'adv 1 key ms': advertiseOneMs,
      'adv 10k keys ms': advertiseBulkMs,
      ...lookupColumns(hits, found, misses, lookups),
      ...joinColumns(rounds, join),
      'RSS/node MiB': rssPerNode,
      'RSS/node compacted MiB': compactedPerNode,
      'live/node MiB': livePerNode,
      'bare process MiB': '—',
      'reprovide 10k CPU ms': (reprovide.user + reprovide.system) / 1000,
      'V8 flags': process.execArgv.filter((flag) => flag !== '--expose-gc').join(' ') || '—'
    }
    const stock: Row = {
      mode: 'stock kad-dht query',
      nodes: size,
      'hit p50 ms': percentile(stockHits, 50),
      'hit p99 ms': percentile(stockHits, 99),
      'hits found': `${stockFound}/${stockLookups}`,
      'miss p50 ms': percentile(stockMisses, 50),
      'miss p99 ms': percentile(stockMisses, 99)
    }
    return { ours, stock }
  } finally {
    await Promise.all(nodes.map((n) => n.close()))
  }
}

/** What a process running one in-process cluster is given. */
interface InProcessJob {
  size: number
  lookups: number
  keyCount: number
  stockLookups: number
  bufferPoolKiB: number
  membership: Membership
}

/**
 * Runs {@link inProcess} in a fresh child process. Clusters measured one after another in one process disturb each
 * other's memory readings: what a closed cluster leaves on the heap for a while is counted in the next one's
 * baseline, then freed while it runs (20 nodes after 10 read -1.6 MiB per node, 50 after 10 read 9.5).
 */
function inFreshProcess(job: InProcessJob, v8Flags: string[]): Promise<{ ours: ClusterResult; stock: Row }> {
  const proc = fork(fileURLToPath(import.meta.url), ['--in-process', JSON.stringify(job)], {
    execArgv: ['--expose-gc', ...v8Flags],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  return new Promise((resolve, reject) => {
    let answered = false
    proc.once('message', (message: { ours: ClusterResult; stock: Row } | { error: string }) => {
      answered = true
      if ('error' in message) reject(new Error(message.error))
      else resolve(message)
    })
    proc.once('error', reject)
    proc.once('exit', (code) => {
      if (!answered) reject(new Error(`the cluster process exited with ${code} before it reported`))
    })
  })
}

/** The child side of {@link inFreshProcess}. */
async function inProcessChild(job: InProcessJob): Promise<void> {
  Buffer.poolSize = job.bufferPoolKiB * 1024
  let message: unknown
  try {
    message = await inProcess(job.size, job.lookups, job.keyCount, job.stockLookups, job.membership)
  } catch (err) {
    message = { error: String(err) }
  }
  process.send?.(message, () => process.exit(0))
}

/** The child side of a multi-process cluster: `count` routers per process, driven over IPC. */
async function child(): Promise<void> {
  const send = (message: unknown): void => {
    process.send?.(message)
  }
  gc(true)
  const baselineRss = process.memoryUsage().rss
  const baselineLive = liveBytes()
  const routers: Libp2pRouter[] = []
  const rounds: number[] = []
  process.on(
    'message',
    async (message: {
      op: string
      count?: number
      seed?: string[]
      membership?: Membership
      size?: number
      keys?: string[]
      key?: string
      node?: number
      compact?: boolean
      id: number
    }) => {
      const router = routers[message.node ?? 0] as Libp2pRouter
      try {
        switch (message.op) {
          case 'start': {
            const started = await startRouters(message.count ?? 1, message.seed, message.membership)
            recordRounds(started, rounds)
            routers.push(...started)
            const first = routers[0] as Libp2pRouter
            return send({ id: message.id, peerId: first.peerId, addresses: first.addresses() })
          }
          case 'peers':
            return send({
              id: message.id,
              peers: routers.map((r) => r.peers().length),
              connections: routers.map((r) => r.libp2p.getConnections().length),
              rounds
            })
          case 'address':
            return send({ id: message.id, peerId: router.peerId, addresses: router.addresses() })
          case 'join': {
            const joined = await timeJoin(
              message.seed ?? [],
              message.size ?? 0,
              message.key as string,
              message.membership ?? 'mesh'
            )
            routers.push(joined.router)
            return send({ id: message.id, viewMs: joined.viewMs, usableMs: joined.usableMs })
          }
          case 'advertise': {
            const start = now()
            const cpu = process.cpuUsage()
            await router.advertise(message.keys ?? [])
            const used = process.cpuUsage(cpu)
            return send({ id: message.id, ms: now() - start, cpuMs: (used.user + used.system) / 1000 })
          }
          case 'lookup': {
            const result = await timeLookup(router, message.key as string)
            return send({ id: message.id, ...result })
          }
          case 'rss':
            gc(message.compact === true)
            return send({
              id: message.id,
              baselineRss,
              rss: process.memoryUsage().rss,
              live: liveBytes() - baselineLive
            })
          case 'stop':
            await Promise.all(routers.map((r) => r.close()))
            send({ id: message.id })
            process.exit(0)
        }
      } catch (err) {
        send({ id: message.id, error: String(err) })
      }
    }
  )
  send({ ready: true })
}

interface ChildHandle {
  call<T>(message: Record<string, unknown>): Promise<T>
  kill(): void
}

/** One router of a multi-process cluster: its process and its index there. */
interface RemoteNode {
  child: ChildHandle
  node: number
}

function spawnChild(bufferPoolKiB: number, v8Flags: string[]): Promise<ChildHandle> {
  const proc = fork(fileURLToPath(import.meta.url), ['--child', String(bufferPoolKiB)], {
    execArgv: ['--expose-gc', ...v8Flags],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  let next = 0
  const pending = new Map<number, (value: unknown) => void>()
  proc.on('message', (message: { id?: number; error?: string }) => {
    if (message.id === undefined) return
    pending.get(message.id)?.(message)
    pending.delete(message.id)
  })
  const handle: ChildHandle = {
    call: <T>(message: Record<string, unknown>) =>
      new Promise<T>((resolve, reject) => {
        const id = next++
        pending.set(id, (value) =>
          (value as { error?: string }).error === undefined
            ? resolve(value as T)
            : reject(new Error((value as { error: string }).error))
        )
        proc.send({ ...message, id })
      }),
    kill: () => proc.kill()
  }
  return new Promise((resolve, reject) => {
    proc.once('message', () => resolve(handle))
    proc.once('error', reject)
  })
}

/** What the processes of a multi-process cluster hold: view sizes, connections per node, rounds of lookups. */
async function census(
  children: readonly ChildHandle[]
): Promise<{ peers: number[]; connections: number[]; rounds: number[] }> {
  const counts = await Promise.all(
    children.map((c) => c.call<{ peers: number[]; connections: number[]; rounds: number[] }>({ op: 'peers' }))
  )
  return {
    peers: counts.flatMap((c) => c.peers),
    connections: counts.flatMap((c) => c.connections),
    rounds: counts.flatMap((c) => c.rounds)
  }
}

/** Connections per node as a column: mean/max. */
function connectionsOf(connections: readonly number[]): string {
  const mean = connections.reduce((a, b) => a + b, 0) / connections.length
  return `${mean.toFixed(1)}/${Math.max(...connections)}`
}

/** What a multi-process cluster runs: lookups and keys, and the processes' settings. */
interface MultiProcessJob {
  lookups: number
  keyCount: number
  bufferPoolKiB: number
  v8Flags: string[]
  membership: Membership
}

/**
 * A cluster of `processes` processes with `perProcess` routers each. RSS per node is what the routers add to
 * their process (its RSS less a bare Node process's, over the routers in it); the bare process is reported apart.
 */
async function multiProcess(
  processes: number,
  perProcess: number,
  job: MultiProcessJob
): Promise<ClusterResult> {
  const { lookups, keyCount, bufferPoolKiB, v8Flags, membership } = job
  const size = processes * perProcess
  const children = await Promise.all(
    Array.from({ length: processes }, () => spawnChild(bufferPoolKiB, v8Flags))
  )
  try {
    const formStart = now()
    const first = await (children[0] as ChildHandle).call<{ peerId: string; addresses: string[] }>({
      op: 'start',
      count: perProcess,
      membership
    })
    // Each process's first node bootstraps from the first nodes of every process started before it (one that fails
    // to reach its seeds under load is reached by a later one: no process stays an island), its other nodes from it.
    const seed = seedOf(first.peerId, first.addresses)
    for (const child of children.slice(1)) {
      const started = await child.call<{ peerId: string; addresses: string[] }>({
        op: 'start',
        count: perProcess,
        seed: [...seed],
        membership
      })
      seed.push(...seedOf(started.peerId, started.addresses))
    }
    // Starting a process takes about a second of CPU; on a small machine 100 of them take minutes to form a mesh.
    const deadline = Date.now() + Math.max(120_000, size * 6_000)
    let reported = Date.now()
    for (;;) {
      const { peers } = await census(children)
      if (peers.every((n) => n === size - 1)) break
      if (Date.now() > deadline)
        throw new Error(`multi-process cluster did not form (views ${Math.min(...peers)}…)`)
      if (Date.now() - reported > 30_000) {
        reported = Date.now()
        const full = peers.filter((n) => n === size - 1).length
        const perProcess = children.map((_, i) =>
          Math.min(...peers.slice((i * size) / processes, ((i + 1) * size) / processes))
        )
        const sorted = [...peers].sort((a, b) => a - b)
        console.error(
          `bench/dht: forming: ${full}/${size} views full, smallest by process ${perProcess.join('/')}, median ${sorted[sorted.length >> 1]}`
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const formSeconds = (now() - formStart) / 1000
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const formed = connectionsOf((await census(children)).connections)
    // As in one process: RSS after a full GC before the work; RSS and live memory after a collection of all
    // available garbage at the end.
    let bareMiB = 0
    let livePerNode = 0
    const memoryPerNode = async (compact: boolean): Promise<number> => {
      const memory = await Promise.all(
        children.map((c) =>
          c.call<{ baselineRss: number; rss: number; live: number }>({ op: 'rss', compact })
        )
      )
      bareMiB = memory.reduce((sum, m) => sum + m.baselineRss, 0) / processes / 1024 / 1024
      livePerNode = memory.reduce((sum, m) => sum + m.live, 0) / size / 1024 / 1024
      return memory.reduce((sum, m) => sum + m.rss - m.baselineRss, 0) / size / 1024 / 1024
    }
    const settled = await memoryPerNode(false)
    // Every process has just run a full GC at once (on a small machine they queue for the cores): let them finish.
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    console.error(
      `bench/dht: a bare child process (Node, before any router) has ${bareMiB.toFixed(1)} MiB RSS`
    )
    const nodes: RemoteNode[] = children.flatMap((child) =>
      Array.from({ length: perProcess }, (_, node) => ({ child, node }))
    )
    const pick = (): RemoteNode => nodes[Math.floor(Math.random() * nodes.length)] as RemoteNode
    const advertise = ({ child, node }: RemoteNode, keys: string[]) =>
      child.call<{ ms: number; cpuMs: number }>({ op: 'advertise', node, keys })
    const one = await advertise(pick(), [randomKey()])
    const owner = pick()
    const bulk = Array.from({ length: keyCount }, randomKey)
    const bulkResult = await advertise(owner, bulk)
    const reprovide = await advertise(owner, bulk)
    const hitKeys = Array.from({ length: lookups }, () => ({ key: randomKey(), owner: pick() }))
    for (const { key, owner } of hitKeys) await advertise(owner, [key])
    const lookup = ({ child, node }: RemoteNode, key: string): Promise<LookupResult> =>
      child.call<LookupResult>({ op: 'lookup', node, key })
    const { times: hits, found } = await timeHits(hitKeys, pick, lookup)
    const misses = await timeMisses(lookups, pick, lookup)
    const compacted = await memoryPerNode(true)
    const { rounds, connections } = await census(children)
    const seeder = pick()
    const seederAt = await seeder.child.call<{ peerId: string; addresses: string[] }>({
      op: 'address',
      node: seeder.node
    })
    const join = await (children[0] as ChildHandle).call<{ viewMs: number; usableMs: number }>({
      op: 'join',
      ...{ seed: seedOf(seederAt.peerId, seederAt.addresses), size, membership },
      key: (hitKeys[0] as { key: string }).key
    })
    const layout = perProcess === 1 ? 'process per node' : `${processes} processes × ${perProcess}`
    return {
      mode: membership === 'mesh' ? layout : `${layout} gossip`,
      'conns/node formed mean/max': formed,
      'conns/node after mean/max': connectionsOf(connections),
      nodes: size,
      'form s': formSeconds,
      'adv 1 key ms': one.ms,
      'adv 10k keys ms': bulkResult.ms,
      ...lookupColumns(hits, found, misses, lookups),
      ...joinColumns(rounds, join),
      'RSS/node MiB': settled,
      'RSS/node compacted MiB': compacted,
      'live/node MiB': livePerNode,
      'bare process MiB': bareMiB,
      'reprovide 10k CPU ms': reprovide.cpuMs,
      'V8 flags': v8Flags.join(' ') || '—'
    }
  } finally {
    await Promise.all(children.map((c) => c.call({ op: 'stop' }).catch(() => c.kill())))
  }
}

/** Runs the DHT benchmark; resolves true when the targets at 100 nodes (10 000 keys at 50) are met. */
export async function benchDht(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: {
      sizes: { type: 'string', default: '10,50,100,200' },
      lookups: { type: 'string', default: '200' },
      keys: { type: 'string', default: '10000' },
      processes: { type: 'string', default: '8' },
      split: { type: 'string', default: '10x10' },
      'stock-lookups': { type: 'string', default: '50' },
      'buffer-pool-kib': { type: 'string', default: String(RECOMMENDED_BUFFER_POOL_KIB) },
      'v8-flags': { type: 'string', default: '' },
      membership: { type: 'string', default: 'mesh' }
    }
  })
  const memberships = (values.membership ?? '').split(',') as Membership[]
  if (memberships.some((m) => m !== 'mesh' && m !== 'gossip'))
    throw new Error(`--membership wants mesh, gossip or both (mesh,gossip); got ${values.membership}`)
  const sizes = (values.sizes ?? '')
    .split(',')
    .map(Number)
    .filter((n) => n > 1)
  const lookups = Number(values.lookups)
  const keyCount = Number(values.keys)
  const bufferPoolKiB = Number(values['buffer-pool-kib'])
  Buffer.poolSize = bufferPoolKiB * 1024
  console.error(`bench/dht: Buffer.poolSize ${bufferPoolKiB} KiB (Node 24's default is 64 KiB)`)
  const processes = Number(values.processes)
  const rows: ClusterResult[] = []
  const stockRows: Row[] = []
  const v8Flags = (values['v8-flags'] ?? '').split(/\s+/).filter((flag) => flag !== '')
  const limit = await openFilesLimit()
  for (const size of sizes) {
    if (limit !== undefined && openFilesNeeded(size, size) > limit) {
      console.error(
        `bench/dht: ${size} nodes in one process skipped: a full mesh needs about ${openFilesNeeded(size, size)} open files, and this process may open ${limit} (ulimit -n)`
      )
      continue
    }
    for (const membership of memberships) {
      console.error(`bench/dht: ${size} nodes in one process, ${membership} membership…`)
      try {
        const stockLookups = Number(values['stock-lookups'])
        const job = { size, lookups, keyCount, stockLookups, bufferPoolKiB, membership }
        const { ours, stock } = await inFreshProcess(job, v8Flags)
        rows.push(ours)
        stockRows.push(stock)
      } catch (err) {
        console.error(`bench/dht: ${size} nodes (${membership}) failed: ${(err as Error).message}`)
      }
    }
  }
  const multiJob = { lookups, keyCount, bufferPoolKiB, v8Flags }
  if (processes > 1) {
    console.error(`bench/dht: ${processes} nodes, one process each…`)
    for (const membership of memberships)
      rows.push(await multiProcess(processes, 1, { ...multiJob, membership }))
  }
  for (const split of (values.split ?? '').split(',').filter((s) => s !== '')) {
    const match = /^(\d+)x(\d+)$/.exec(split)
    if (match === null) throw new Error(`--split wants PROCESSESxNODES, such as 10x10; got ${split}`)
    const [processCount, perProcess] = [Number(match[1]), Number(match[2])]
    console.error(`bench/dht: ${processCount * perProcess} nodes, ${processCount} processes × ${perProcess}…`)
    for (const membership of memberships) {
      try {
        rows.push(await multiProcess(processCount, perProcess, { ...multiJob, membership }))
      } catch (err) {
        console.error(`bench/dht: ${split} (${membership}) failed: ${(err as Error).message}`)
      }
    }
  }
  printTable('bench/dht: kadmirror router (one-round lookups to the closest peers)', rows)
  printTable('bench/dht: stock @libp2p/kad-dht findProviders on the same clusters, for reference', stockRows)
  const at50 = rows.find((r) => r.mode.startsWith('in-process') && r.nodes === 50)
  const withFlags = v8Flags.length === 0 ? '' : ` with ${v8Flags.join(' ')}`
  /** The 100-node targets against one row, named with `where`. */
  const checksAt100 = (
    row: ClusterResult | undefined,
    where: string
  ): Record<string, boolean | undefined> => ({
    [`hit p50 ≤ 5 ms @100 ${where}`]: row === undefined ? undefined : row['hit p50 ms'] <= TARGETS.hitP50Ms,
    [`hit p99 ≤ 25 ms @100 ${where}`]: row === undefined ? undefined : row['hit p99 ms'] <= TARGETS.hitP99Ms,
    [`miss p99 ≤ 25 ms @100 ${where}`]:
      row === undefined ? undefined : row['miss p99 ms'] <= TARGETS.missP99Ms,
    [`RSS ≤ 6 MiB/node @100 ${where}`]:
      row === undefined ? undefined : row['RSS/node MiB'] <= TARGETS.rssPerNodeMiB,
    ...(row?.mode.endsWith(' gossip') === true
      ? {
          [`≤ 64 connections/node @100 ${where}`]:
            Number(row['conns/node after mean/max'].split('/')[1]) <= TARGETS.gossipConnections
        }
      : {})
  })
  /** The 100-node rows of one membership: in one process, and across processes. */
  const rowsAt100 = (membership: Membership, inOneProcess: boolean): ClusterResult | undefined =>
    rows.find(
      (r) =>
        r.nodes === 100 &&
        r.mode.startsWith('in-process') === inOneProcess &&
        r.mode.endsWith(' gossip') === (membership === 'gossip')
    )
  const checks: Record<string, boolean | undefined> = {
    '10k keys ≤ 30 s @50': at50 === undefined ? undefined : at50['adv 10k keys ms'] <= TARGETS.advertise10kMs
  }
  for (const membership of memberships) {
    const named = membership === 'mesh' ? '' : ', gossip membership'
    Object.assign(
      checks,
      checksAt100(rowsAt100(membership, true), `in one process${named}${withFlags}`),
      checksAt100(rowsAt100(membership, false), `in several processes${named}${withFlags}`)
    )
  }
  for (const [name, met] of Object.entries(checks))
    console.log(`target ${name}: ${met === undefined ? 'not measured' : met ? 'met' : 'NOT met'}`)
  const file = await writeResults('dht', {
    targets: TARGETS,
    bufferPoolKiB,
    checks,
    rows,
    stock: stockRows,
    lookups,
    keys: keyCount
  })
  console.log(`wrote ${file}`)
  return Object.values(checks).every((m) => m !== false)
}

if (process.argv.includes('--child')) {
  Buffer.poolSize = Number(process.argv[process.argv.indexOf('--child') + 1]) * 1024
  await child()
} else if (process.argv.includes('--in-process')) {
  await inProcessChild(
    JSON.parse(process.argv[process.argv.indexOf('--in-process') + 1] as string) as InProcessJob
  )
} else if (import.meta.main) await benchDht(process.argv.slice(2))
