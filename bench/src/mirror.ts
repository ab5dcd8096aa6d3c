/**
 * bench/mirror, all on loopback:
 * 1. 404 on a miss through a node's mirror on libp2p clusters of 10 and 50 nodes (p50/p99; the asked node in
 *    its own process, the others spread over a few processes, timed by curl); hits of a small blob held by
 *    another node, for comparison. Target: miss p99 ≤ 25 ms.
 * 2. One 256 MiB blob from a node's own store (mirror in its own process) vs nginx (Debian nginx-light)
 *    serving the same file: throughput and time to first byte. Target ≥ 0.8× nginx.
 * 3. The same blob through one peer hop (node A fetches from node B, verifying) vs fetched directly from B's
 *    mirror. Target ≥ 0.8×.
 * 4. 250 concurrent manifest GETs by tag (the mirror holds at most 256 connections per client address): served locally by B, and through A from B: p50/p99 and errors (none).
 *
 * Usage: node bench/src/mirror.ts [--sizes 10,50] [--lookups 200] [--blob-mib 256] [--iterations 5]
 *          [--concurrency 250] [--skip-cluster] [--skip-transfer]
 */
import { type ChildProcess, fork, spawn } from 'node:child_process'
import { randomFillSync, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { buildImage, type Digest, digestHex, digestOf } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { waitFor } from '@kadmirror/test-support'
import { Agent } from 'undici'
import { median, percentile, printTable, type Row, writeResults } from './report.ts'

const TARGETS = { missP99Ms: 25, localVsNginx: 0.8, hopVsDirect: 0.8 }
const NGINX = '/usr/sbin/nginx'
const CURL = ['/usr/bin/curl', '/bin/curl'].find((path) => existsSync(path))
const now = (): number => performance.now()

const randomDigest = (): Digest => digestOf(randomUUID())

/** Times one GET, reading and discarding the body; returns ms to headers, ms in all, bytes, status. */
async function timeGet(client: Agent, origin: string, path: string) {
  const start = now()
  const res = await client.request({ origin, path, method: 'GET' })
  const headersMs = now() - start
  let bytes = 0
  for await (const chunk of res.body as AsyncIterable<Buffer>) bytes += chunk.byteLength
  return { status: res.statusCode, headersMs, totalMs: now() - start, bytes }
}

interface Host {
  call<T>(message: Record<string, unknown>): Promise<T>
  stop(): Promise<void>
}

/** Forks a cluster-host process (several nodes in one process, driven over IPC). */
async function forkHost(): Promise<Host> {
  const child = fork(join(dirname(fileURLToPath(import.meta.url)), 'cluster-host.ts'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  let next = 0
  const pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>()
  child.on('message', (message: { id?: number; error?: string }) => {
    if (message.id === undefined) return
    const waiter = pending.get(message.id)
    pending.delete(message.id)
    if (message.error === undefined) waiter?.resolve(message)
    else waiter?.reject(new Error(message.error))
  })
  await once(child, 'message')
  const call = <T>(message: Record<string, unknown>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = next++
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject })
      child.send({ ...message, id })
    })
  return {
    call,
    async stop() {
      await call({ op: 'stop' }).catch(() => {})
      child.kill('SIGTERM')
      if (child.exitCode === null) await once(child, 'exit')
    }
  }
}

/**
 * Part 1: misses (and hits) through one node's mirror on a libp2p cluster of `size` nodes: the asked node in
 * its own process, the others spread over `hostCount` processes.
 */
async function clusterMisses(size: number, lookups: number, hostCount: number, work: string): Promise<Row> {
  const formStart = now()
  const hosts: Host[] = []
  const client = new Agent({ connections: 8 })
  let askerProcess: NodeProcess | undefined
  try {
    hosts.push(...(await Promise.all(Array.from({ length: hostCount }, forkHost))))
    const others = size - 1
    const share = (i: number): number => Math.floor(others / hostCount) + (i < others % hostCount ? 1 : 0)
    const { seeds } = await (hosts[0] as Host).call<{ seeds: string[] }>({ op: 'start', count: 1 })
    const seed = [seeds[0] as string]
    await Promise.all(
      hosts.map((host, i) => host.call({ op: 'start', count: share(i) - (i === 0 ? 1 : 0), seed }))
    )
    askerProcess = await spawnNode(join(work, `asker-${size}`), seed[0])
    const asker = { url: askerProcess.url }
    await waitFor(
      async () => {
        const views = await Promise.all(hosts.map((h) => h.call<{ peers: number[] }>({ op: 'peers' })))
        return views.every((v) => v.peers.every((n) => n === size - 1))
      },
      size * 10_000,
      'a full mesh'
    )
    const formSeconds = (now() - formStart) / 1000
    // Hits: small images, each on a random node, fetched once by blob digest through the asker's mirror.
    const perHost = Math.ceil(lookups / hostCount)
    const layers = (
      await Promise.all(
        hosts.map((h) => h.call<{ layers: Digest[] }>({ op: 'images', count: perHost, layerBytes: 4096 }))
      )
    )
      .flatMap((r) => r.layers)
      .slice(0, lookups)
    await waitFor(
      async () =>
        (await timeGet(client, asker.url, `/v2/hit/blobs/${layers[0]}?ns=bench.local`)).status === 200,
      60_000,
      'the asker to join'
    )
    const missPaths = (n: number): string[] =>
      Array.from({ length: n }, () => `/v2/x/blobs/${randomDigest()}?ns=bench.local`)
    await timeMany(client, asker.url, missPaths(20))
    const missResults = await timeMany(client, asker.url, missPaths(lookups))
    const misses = missResults.map((r) => r.totalMs)
    const missErrors = missResults.filter((r) => r.status !== 404).length
    const hitResults = await timeMany(
      client,
      asker.url,
      layers.slice(1).map((layer) => `/v2/hit/blobs/${layer}?ns=bench.local`)
    )
    const hits = hitResults.map((r) => r.totalMs)
    const hitErrors = hitResults.filter((r) => r.status !== 200 || r.bytes !== 4096).length
    return {
      nodes: size,
      processes: hostCount + 1,
      'form s': formSeconds,
      'miss p50 ms': percentile(misses, 50),
      'miss p99 ms': percentile(misses, 99),
      'miss not 404': missErrors,
      'hit p50 ms': percentile(hits, 50),
      'hit p99 ms': percentile(hits, 99),
      'hit errors': hitErrors
    }
  } finally {
    await client.close()
    if (askerProcess !== undefined) {
      askerProcess.child.kill('SIGTERM')
      if (askerProcess.child.exitCode === null) await once(askerProcess.child, 'exit')
    }
    await Promise.all(hosts.map((h) => h.stop()))
  }
}

interface NodeProcess {
  url: string
  /** Node processes only. */
  peerId: string
  addresses: string[]
  child: ChildProcess
}

async function spawnNode(dir: string, bootstrap?: string, extra: string[] = []): Promise<NodeProcess> {
  return spawnScript('mirror-node.ts', [
    '--dir',
    dir,
    ...(bootstrap === undefined ? [] : ['--bootstrap', bootstrap]),
    ...extra
  ])
}

/** Starts a bench script in its own process and reads the JSON line it prints when ready. */
async function spawnScript(name: string, args: string[]): Promise<NodeProcess> {
  const script = join(dirname(fileURLToPath(import.meta.url)), name)
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  const lines = createInterface({ input: child.stdout as NonNullable<typeof child.stdout> })
  for await (const line of lines) {
    const ready = JSON.parse(line) as Omit<NodeProcess, 'child'>
    return { ...ready, child }
  }
  throw new Error('mirror node exited before it was ready')
}

async function startNginx(root: string, work: string): Promise<{ url: string; stop(): Promise<void> }> {
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
  await mkdir(join(work, 'logs'), { recursive: true })
  const conf = join(work, 'nginx.conf')
  await writeFile(
    conf,
    `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${join(work, 'nginx.pid')};
error_log ${join(work, 'logs', 'error.log')};
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path ${work}/body;
  proxy_temp_path ${work}/proxy;
  fastcgi_temp_path ${work}/fastcgi;
  uwsgi_temp_path ${work}/uwsgi;
  scgi_temp_path ${work}/scgi;
  server { listen 127.0.0.1:${port}; root ${root}; }
}
`
  )
  const child = spawn(NGINX, ['-c', conf, '-p', work, '-e', join(work, 'logs', 'error.log')], {
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const url = `http://127.0.0.1:${port}`
  const client = new Agent()
  await waitFor(
    async () => {
      try {
        await (await client.request({ origin: url, path: '/', method: 'GET' })).body.dump()
        return true
      } catch {
        return false
      }
    },
    10_000,
    'nginx'
  )
  await client.close()
  return {
    url,
    async stop() {
      child.kill('SIGTERM')
      if (child.exitCode === null) await once(child, 'exit')
    }
  }
}

interface Transfer {
  mibps: number
  ttfbMs: number
}

/**
 * Times one whole-blob download. With curl on PATH the client is curl (a C client, so the servers are what is
 * measured, not a Node client's own limits); otherwise undici. Bytes are discarded.
 */
async function timeTransfer(
  client: Agent,
  origin: string,
  path: string
): Promise<{ status: number; bytes: number; totalMs: number; headersMs: number }> {
  if (CURL === undefined) return timeGet(client, origin, path)
  const child = spawn(
    CURL,
    [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{size_download} %{time_starttransfer} %{time_total}',
      `${origin}${path}`
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit']
    }
  )
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString()
  })
  await once(child, 'exit')
  const [status, bytes, ttfb, total] = out.trim().split(' ').map(Number)
  return {
    status: status as number,
    bytes: bytes as number,
    headersMs: (ttfb as number) * 1000,
    totalMs: (total as number) * 1000
  }
}

/**
 * Times GETs of `paths`, one after another on one connection. With curl on PATH the client is one curl
 * process (so the times are not a busy Node process's own delays); otherwise undici.
 */
async function timeMany(
  client: Agent,
  origin: string,
  paths: string[]
): Promise<{ status: number; totalMs: number; bytes: number }[]> {
  if (CURL === undefined) return Promise.all(paths.map((path) => timeGet(client, origin, path)))
  const args = ['-s', '-w', '%{http_code} %{size_download} %{time_total}\\n']
  for (const path of paths) args.push('-o', '/dev/null', `${origin}${path}`)
  const child = spawn(CURL, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString()
  })
  await once(child, 'exit')
  return out
    .trim()
    .split('\n')
    .map((line) => {
      const [status, bytes, total] = line.split(' ').map(Number)
      return { status: status as number, bytes: bytes as number, totalMs: (total as number) * 1000 }
    })
}

async function timeTransfers(client: Agent, origin: string, path: string, size: number, runs: number) {
  const results: Transfer[] = []
  for (let i = 0; i < runs; i++) {
    const r = await timeTransfer(client, origin, path)
    if (r.status !== 200 || r.bytes !== size)
      throw new Error(`${origin}${path}: ${r.status}, ${r.bytes} bytes`)
    results.push({ mibps: size / 1024 / 1024 / (r.totalMs / 1000), ttfbMs: r.headersMs })
  }
  return results
}

const summary = (name: string, transfers: Transfer[], base?: number): Row => {
  const mibps = median(transfers.map((t) => t.mibps))
  return {
    server: name,
    'MiB/s p50': mibps,
    'TTFB p50 ms': median(transfers.map((t) => t.ttfbMs)),
    ratio: base === undefined ? 1 : mibps / base
  }
}

/** Parts 2–4: transfers between node processes, and nginx. */
async function transfers(blobMiB: number, iterations: number, concurrency: number) {
  const work = await mkdtemp(join(tmpdir(), 'kadmirror-bench-mirror-'))
  const processes: NodeProcess[] = []
  const client = new Agent({ connections: concurrency, keepAliveTimeout: 30_000 })
  let nginx: Awaited<ReturnType<typeof startNginx>> | undefined
  try {
    const dirB = join(work, 'b')
    const storeB = await openOciLayoutStore({ directory: dirB, create: true, watch: false })
    const size = blobMiB * 1024 * 1024
    const big = buildImage({ layers: [randomFillSync(new Uint8Array(size))] })
    const layer = [...big.blobs.entries()].find(([, b]) => b.byteLength === size)?.[0] as Digest
    await storeB.addImage('bench.local/big:1', big)
    const small = buildImage({ layers: [Buffer.from('small')] })
    await storeB.addImage('bench.local/small:1', small)
    await storeB.close()

    const b = await spawnNode(dirB)
    processes.push(b)
    const a = await spawnNode(join(work, 'a'), `${b.addresses[0]}/p2p/${b.peerId}`)
    processes.push(a)
    const c = await spawnNode(join(work, 'c'), `${b.addresses[0]}/p2p/${b.peerId}`, ['--forward'])
    processes.push(c)
    const blobPath = `/v2/big/blobs/${layer}?ns=bench.local`
    for (const asker of [a, c])
      await waitFor(
        async () =>
          (await client.request({ origin: asker.url, path: blobPath, method: 'HEAD' })).statusCode === 200,
        30_000,
        'nodes A and C to find the blob on node B'
      )

    // 2. Local store vs nginx, alternating so both see the same page cache.
    const local: Transfer[] = []
    const fromNginx: Transfer[] = []
    let nginxSkipped: string | undefined
    if (existsSync(NGINX)) nginx = await startNginx(dirB, join(work, 'nginx'))
    else nginxSkipped = `${NGINX} not found (apt-get install nginx-light)`
    const nginxPath = `/blobs/sha256/${digestHex(layer)}`
    await timeTransfers(client, b.url, blobPath, size, 1)
    for (let i = 0; i < iterations; i++) {
      local.push(...(await timeTransfers(client, b.url, blobPath, size, 1)))
      if (nginx !== undefined) fromNginx.push(...(await timeTransfers(client, nginx.url, nginxPath, size, 1)))
    }
    // 3. Through one peer hop vs directly from the peer.
    const hop: Transfer[] = []
    const forwarded: Transfer[] = []
    const direct: Transfer[] = []
    const piped: Transfer[] = []
    const pipe = await spawnScript('pipe-proxy.ts', ['--upstream', b.url])
    processes.push(pipe)
    await timeTransfers(client, a.url, blobPath, size, 1)
    await timeTransfers(client, c.url, blobPath, size, 1)
    for (let i = 0; i < iterations; i++) {
      direct.push(...(await timeTransfers(client, b.url, blobPath, size, 1)))
      hop.push(...(await timeTransfers(client, a.url, blobPath, size, 1)))
      forwarded.push(...(await timeTransfers(client, c.url, blobPath, size, 1)))
      piped.push(...(await timeTransfers(client, pipe.url, blobPath, size, 1)))
    }

    // 4. Concurrent manifest GETs by tag.
    const manifestPath = '/v2/small/manifests/1?ns=bench.local'
    const burst = async (origin: string) => {
      // A client of its own, closed after: every process here is on 127.0.0.1, and idle connections left open to B
      // would count against B's per-client cap (256) when A then connects to B.
      const burstClient = new Agent({ connections: concurrency, keepAliveTimeout: 30_000 })
      const results = await Promise.all(
        Array.from({ length: concurrency }, () =>
          timeGet(burstClient, origin, manifestPath).catch(() => ({
            status: 0,
            headersMs: 0,
            totalMs: Number.NaN,
            bytes: 0
          }))
        )
      )
      await burstClient.close()
      const times = results.map((r) => r.totalMs)
      return {
        'p50 ms': percentile(times, 50),
        'p99 ms': percentile(times, 99),
        errors: results.filter((r) => r.status !== 200 || r.bytes !== small.root.size).length
      }
    }
    await burst(b.url)
    const localBurst = { served: 'locally by B', ...(await burst(b.url)) }
    const peerBurst = { served: 'by A from peer B', ...(await burst(a.url)) }

    const nginxRow = fromNginx.length > 0 ? summary('nginx-light (sendfile)', fromNginx) : undefined
    const localRow = summary('kadmirror, local store', local, nginxRow?.['MiB/s p50'] as number | undefined)
    const directRow = summary('kadmirror B, direct', direct)
    const hopRow = summary(
      'kadmirror A → peer B (verified before forwarding: the default)',
      hop,
      directRow['MiB/s p50'] as number
    )
    const forwardRow = summary(
      'kadmirror C → peer B (forwarded as it arrives, last chunk held back)',
      forwarded,
      directRow['MiB/s p50'] as number
    )
    const pipeRow = summary(
      'reference: bare undici pipe → B (no lookup, unverified)',
      piped,
      directRow['MiB/s p50'] as number
    )
    return {
      blobMiB,
      iterations,
      concurrency,
      nginxRow,
      nginxSkipped,
      localRow,
      directRow,
      hopRow,
      forwardRow,
      pipeRow,
      localBurst,
      peerBurst,
      raw: { local, fromNginx, direct, hop, forwarded, piped }
    }
  } finally {
    await client.close()
    await nginx?.stop()
    for (const p of processes) {
      p.child.kill('SIGTERM')
      if (p.child.exitCode === null) await once(p.child, 'exit')
    }
    await rm(work, { recursive: true, force: true })
  }
}

/** Runs bench/mirror; resolves true when every measured target is met. */
export async function benchMirror(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: {
      sizes: { type: 'string', default: '10,50' },
      lookups: { type: 'string', default: '200' },
      'blob-mib': { type: 'string', default: '256' },
      iterations: { type: 'string', default: '5' },
      concurrency: { type: 'string', default: '250' },
      'skip-cluster': { type: 'boolean', default: false },
      'skip-transfer': { type: 'boolean', default: false }
    }
  })
  const checks: Record<string, boolean | undefined> = {}
  const results: Record<string, unknown> = { targets: TARGETS }
  if (values['skip-cluster'] !== true) {
    const rows: Row[] = []
    const work = await mkdtemp(join(tmpdir(), 'kadmirror-bench-cluster-'))
    try {
      for (const size of (values.sizes ?? '')
        .split(',')
        .map(Number)
        .filter((n) => n > 2)) {
        console.error(`bench/mirror: misses through a mirror, ${size} nodes…`)
        rows.push(
          await clusterMisses(size, Number(values.lookups), Math.min(8, Math.ceil((size - 1) / 7)), work)
        )
      }
    } finally {
      await rm(work, { recursive: true, force: true })
    }
    printTable(
      'bench/mirror: GET through one node’s mirror (its own process; the others spread over a few processes): 404 on a miss, a 4 KiB blob from a peer on a hit',
      rows
    )
    for (const row of rows)
      checks[`miss p99 ≤ 25 ms @${row.nodes}`] =
        (row['miss p99 ms'] as number) <= TARGETS.missP99Ms && row['miss not 404'] === 0
    results.cluster = rows
  }
  if (values['skip-transfer'] !== true) {
    console.error('bench/mirror: transfers between node processes…')
    const t = await transfers(
      Number(values['blob-mib']),
      Number(values.iterations),
      Number(values.concurrency)
    )
    printTable(
      `bench/mirror: one ${t.blobMiB} MiB blob, median of ${t.iterations}, client ${CURL === undefined ? 'undici' : 'curl'} (page cache warm; mirrors and nginx in their own processes)`,
      [
        ...(t.nginxRow === undefined ? [] : [t.nginxRow]),
        t.localRow,
        t.directRow,
        t.hopRow,
        t.forwardRow,
        t.pipeRow
      ]
    )
    if (t.nginxSkipped !== undefined) console.log(`nginx skipped: ${t.nginxSkipped}`)
    printTable(`bench/mirror: ${t.concurrency} concurrent manifest GETs by tag`, [t.localBurst, t.peerBurst])
    checks['local ≥ 0.8× nginx'] =
      t.nginxRow === undefined ? undefined : (t.localRow.ratio as number) >= TARGETS.localVsNginx
    checks['peer hop ≥ 0.8× direct'] = (t.hopRow.ratio as number) >= TARGETS.hopVsDirect
    checks['no errors in the manifest burst'] = t.localBurst.errors === 0 && t.peerBurst.errors === 0
    results.transfer = t
  }
  for (const [name, met] of Object.entries(checks)) {
    console.log(`target ${name}: ${met === undefined ? 'not measured' : met ? 'met' : 'NOT met'}`)
  }
  const file = await writeResults('mirror', { ...results, checks })
  console.log(`wrote ${file}`)
  return Object.values(checks).every((m) => m !== false)
}

if (import.meta.main) await benchMirror(process.argv.slice(2))
