/**
 * bench/e2e: pull time of a ~100 MB image on node B through real containerd (`ctr images pull`, native
 * snapshotter), all on 127.0.0.1: directly from the upstream registry; through kadmirror from node A; through
 * kadmirror on a miss (the mirror answers 404 and containerd falls back). Then the same with the upstream
 * behind a proxy throttled to 20 MB/s. Median of `--iterations`. Targets: fallback overhead ≤ 5 % of the
 * direct pull; from a peer ≥ 2× faster than the throttled upstream.
 *
 * Needs root, containerd, docker-registry, umoci and skopeo (as test/e2e); prints why and exits otherwise.
 * Usage: node bench/src/e2e.ts [--iterations 3] [--mib 100] [--throttle-mbps 20]
 */
import { once } from 'node:events'
import { mkdir, writeFile } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { renderHostsToml } from '@kadmirror/containerd'
import {
  buildAndPush,
  e2eUnavailable,
  type Host,
  type KadmirrorNode,
  mkdtemp,
  rm,
  startHost,
  startNode,
  startRegistry
} from '../../test/e2e/fixtures.ts'
import { median, printTable, type Row, writeResults } from './report.ts'

const TARGETS = { fallbackOverhead: 0.05, peerVsThrottled: 2 }

/**
 * A TCP proxy to `target` whose answers (target → client) are limited to `bytesPerSecond` in all, over every
 * connection together (containerd downloads layers in parallel).
 */
export async function throttleProxy(target: { host: string; port: number }, bytesPerSecond: number) {
  const sockets = new Set<Socket>()
  let allowance = 0
  let last = performance.now()
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host)
    sockets.add(client).add(upstream)
    client.pipe(upstream)
    upstream.on('data', (chunk: Buffer) => {
      const now = performance.now()
      allowance = Math.min(bytesPerSecond / 10, allowance + ((now - last) / 1000) * bytesPerSecond)
      last = now
      allowance -= chunk.byteLength
      client.write(chunk)
      if (allowance < 0) {
        upstream.pause()
        setTimeout(() => upstream.resume(), (-allowance / bytesPerSecond) * 1000)
      }
    })
    upstream.on('end', () => client.end())
    const close = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}

/** Writes a hosts directory for `registry` whose upstream is `server`, with `mirror` first when given. */
export async function hostsDir(
  dir: string,
  registry: string,
  server: string,
  mirror?: string
): Promise<string> {
  await mkdir(join(dir, registry), { recursive: true })
  // Without a mirror the upstream is also named as the one host: with only `server` in the file, containerd 1.6
  // was seen pulling from the registry's own address instead (the throttled runs were not throttled).
  const text = renderHostsToml(`http://${server}`, [mirror ?? `http://${server}`])
  await writeFile(join(dir, registry, 'hosts.toml'), text)
  return dir
}

export async function benchE2e(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: {
      iterations: { type: 'string', default: '3' },
      mib: { type: 'string', default: '100' },
      'throttle-mbps': { type: 'string', default: '20' }
    }
  })
  const why = e2eUnavailable()
  if (why !== undefined) {
    console.log(`bench/e2e skipped: ${why}`)
    return true
  }
  const iterations = Number(values.iterations)
  const mib = Number(values.mib)
  const throttle = Number(values['throttle-mbps']) * 1000 * 1000
  const work = await mkdtemp(join(tmpdir(), 'kadmirror-bench-e2e-'))
  const registry = await startRegistry(work)
  const hosts: Host[] = []
  const nodes: KadmirrorNode[] = []
  const proxy = await throttleProxy(
    { host: '127.0.0.1', port: Number(registry.host.split(':')[1]) },
    throttle
  )
  try {
    console.error(`bench/e2e: building a ${mib} MiB image…`)
    const MiB = 1024 * 1024
    await buildAndPush(work, registry.host, 'bench/big', '1', [
      Math.round(mib * 0.5) * MiB,
      Math.round(mib * 0.3) * MiB,
      Math.round(mib * 0.2) * MiB
    ])
    const image = `${registry.host}/bench/big:1`
    const a = await startHost(work, 'a')
    const b = await startHost(work, 'b')
    hosts.push(a, b)
    const nodeA = await startNode(a.containerd, join(work, 'node-a'))
    const nodeB = await startNode(
      b.containerd,
      join(work, 'node-b'),
      `${nodeA.addresses[0]}/p2p/${nodeA.peerId}`
    )
    // Node C forwards blobs from peers as they arrive (on B's containerd): the pull through it is the comparison for
    // node B's default, which verifies each blob whole before its first byte.
    const nodeC = await startNode(
      b.containerd,
      join(work, 'node-c'),
      `${nodeA.addresses[0]}/p2p/${nodeA.peerId}`,
      ['--forward']
    )
    nodes.push(nodeA, nodeB, nodeC)
    const dirs = {
      direct: await hostsDir(join(work, 'direct'), registry.host, registry.host),
      mirror: await hostsDir(join(work, 'mirror'), registry.host, registry.host, nodeB.url),
      forwarding: await hostsDir(join(work, 'forwarding'), registry.host, registry.host, nodeC.url),
      directThrottled: await hostsDir(join(work, 'direct-throttled'), registry.host, proxy.address),
      mirrorThrottled: await hostsDir(join(work, 'mirror-throttled'), registry.host, proxy.address, nodeB.url)
    }
    const pullOnB = async (dir: string): Promise<number> => {
      await b.remove(`${registry.host}/bench/`)
      const start = performance.now()
      await b.containerd.ctr('k8s.io', 'images', 'pull', '--hosts-dir', dir, '--snapshotter', 'native', image)
      return performance.now() - start
    }
    const aHasIt = async (has: boolean): Promise<void> => {
      if (has)
        await a.containerd.ctr(
          'k8s.io',
          'images',
          'pull',
          '--hosts-dir',
          dirs.direct,
          '--snapshotter',
          'native',
          image
        )
      else await a.remove(`${registry.host}/bench/`)
      // Asked of node B's mirror without a copy of its own, the answer says what the DHT says of node A.
      await b.remove(`${registry.host}/bench/`)
      const deadline = Date.now() + 30_000
      for (;;) {
        const res = await fetch(`${nodeB.url}/v2/bench/big/manifests/1?ns=${registry.host}`, {
          method: 'HEAD'
        })
        if (res.ok === has) return
        if (Date.now() > deadline)
          throw new Error(`node B did not see node A ${has ? 'advertise' : 'withdraw'} the image`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    const times: Record<string, number[]> = {}
    const measure = async (name: string, dir: string): Promise<void> => {
      times[name] ??= []
      times[name].push(await pullOnB(dir))
    }
    await pullOnB(dirs.direct) // warm caches
    for (let i = 0; i < iterations; i++) {
      console.error(`bench/e2e: round ${i + 1} of ${iterations}…`)
      await aHasIt(false)
      await measure('direct', dirs.direct)
      await measure('miss', dirs.mirror)
      await measure('direct throttled', dirs.directThrottled)
      await measure('miss throttled', dirs.mirrorThrottled)
      await aHasIt(true)
      await measure('peer', dirs.mirror)
      await measure('peer, forwarding', dirs.forwarding)
      await measure('peer, upstream throttled', dirs.mirrorThrottled)
    }
    const p50 = (name: string): number => median(times[name] as number[])
    const rows: Row[] = [
      { pull: 'directly from upstream', 'seconds p50': p50('direct') / 1000, 'vs direct': 1 },
      {
        pull: 'through kadmirror, miss (fallback)',
        'seconds p50': p50('miss') / 1000,
        'vs direct': p50('miss') / p50('direct')
      },
      {
        pull: 'through kadmirror, from node A (verified before forwarding: the default)',
        'seconds p50': p50('peer') / 1000,
        'vs direct': p50('peer') / p50('direct')
      },
      {
        pull: 'through kadmirror, from node A (forwarded as it arrives)',
        'seconds p50': p50('peer, forwarding') / 1000,
        'vs direct': p50('peer, forwarding') / p50('direct')
      },
      {
        pull: `directly from upstream throttled to ${values['throttle-mbps']} MB/s`,
        'seconds p50': p50('direct throttled') / 1000,
        'vs direct': p50('direct throttled') / p50('direct')
      },
      {
        pull: 'through kadmirror, miss, upstream throttled',
        'seconds p50': p50('miss throttled') / 1000,
        'vs direct': p50('miss throttled') / p50('direct')
      },
      {
        pull: 'through kadmirror, from node A, upstream throttled',
        'seconds p50': p50('peer, upstream throttled') / 1000,
        'vs direct': p50('peer, upstream throttled') / p50('direct')
      }
    ]
    printTable(
      `bench/e2e: pull of a ${mib} MiB image (3 layers) on node B with ctr, median of ${iterations}`,
      rows
    )
    const overhead = p50('miss') / p50('direct') - 1
    const speedup = p50('direct throttled') / p50('peer, upstream throttled')
    const checks = {
      'fallback overhead ≤ 5 %': overhead <= TARGETS.fallbackOverhead,
      'from a peer ≥ 2× faster than the throttled upstream': speedup >= TARGETS.peerVsThrottled
    }
    console.log(
      `fallback overhead: ${(overhead * 100).toFixed(1)} %; peer vs throttled upstream: ${speedup.toFixed(1)}×`
    )
    for (const [name, met] of Object.entries(checks))
      console.log(`target ${name}: ${met ? 'met' : 'NOT met'}`)
    const file = await writeResults('e2e', {
      mib,
      iterations,
      throttleBytesPerSecond: throttle,
      times,
      overhead,
      speedup,
      targets: TARGETS,
      checks
    })
    console.log(`wrote ${file}`)
    return Object.values(checks).every(Boolean)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await Promise.all(hosts.map((h) => h.containerd.stop()))
    await proxy.close()
    await registry.stop()
    await rm(work, { recursive: true, force: true })
  }
}

if (import.meta.main) await benchE2e(process.argv.slice(2))
