/**
 * A mixed cluster for the interop suite: an upstream registry, a Spegel node and a kadmirror node, each host in a
 * network namespace of its own (Spegel drops loopback addresses) with its own containerd, both mirrors on their
 * default ports (Spegel dials every provider's mirror on the port it uses itself, 5000: kadmirror's default).
 * Spegel bootstraps from kadmirror's HTTP `/id` and kadmirror from Spegel's.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { renderHostsToml } from '@kadmirror/containerd'
import { waitFor } from '@kadmirror/test-support'
import type { NetworkNode } from '@kadmirror/test-support/netns'
import type { ContainerdProcess } from '../../packages/containerd/test/containerd-process.ts'
import { collectAccessLog, startHost, writeRegistryConfig } from '../e2e/fixtures.ts'

/** The upstream registry's port inside its namespace. */
export const UPSTREAM_PORT = 5050
/** The HTTP bootstrap port both mirrors serve `/id` on (Spegel's `--http-bootstrap-addr`). */
export const BOOTSTRAP_PORT = 5002

/** docker-registry serving `storage` in `node`'s namespace; `requests` collects its access log's request lines. */
export async function startUpstream(
  node: NetworkNode,
  dir: string,
  storage: string
): Promise<{ host: string; requests: string[]; child: ChildProcess }> {
  const config = join(dir, 'upstream.yml')
  await writeRegistryConfig(config, storage, `0.0.0.0:${UPSTREAM_PORT}`)
  const child = node.spawn('/usr/bin/docker-registry', ['serve', config], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const requests: string[] = []
  collectAccessLog(child, requests)
  const host = `${node.address}:${UPSTREAM_PORT}`
  await until(
    async () => (await curl(node, `http://${host}/v2/`)).status === 200,
    15_000,
    'the upstream registry'
  )
  return { host, requests, child }
}

/** Polls `check` every 200 ms (a failed check counts as false) until it holds; throws after `ms` naming `what`. */
export function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  return waitFor(() => check().catch(() => false), ms, what, 200)
}

/** An HTTP answer seen by curl: status, the last header block as text, the body bytes, and seconds taken. */
export interface CurlAnswer {
  status: number
  headers: string
  body: Buffer
  seconds: number
}

/**
 * An HTTP request made from inside `node`'s namespace with curl, any method, the path sent as given (`../` kept). The
 * body of a HEAD answer is empty (curl does not read one). Status 0: no answer (refused, or over 10 s).
 */
export async function curlRequest(
  node: NetworkNode,
  url: string,
  method = 'GET',
  headers: Record<string, string> = {}
): Promise<CurlAnswer> {
  const dir = await mkdtemp(join(tmpdir(), 'kadmirror-curl-'))
  try {
    const file = join(dir, 'body')
    const marker = '\n--kadmirror-curl--\n'
    const sent = Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`])
    const { stdout } = await node.run(
      'curl',
      [
        ...['-s', '--path-as-is', '-m', '10', '-D', '-', '-o', file],
        ...(method === 'HEAD' ? ['-I'] : ['-X', method]),
        ...sent,
        ...['-w', `${marker}%{http_code} %{time_total}`, url]
      ],
      { timeout: 30_000 }
    )
    const [response = '', tail = ''] = stdout.split(marker)
    const [status, seconds] = tail.trim().split(' ').map(Number) as [number, number]
    // curl prints each response's head (a 100 Continue's too): the last one is the answer's.
    const block =
      response
        .trim()
        .split(/\r?\n\r?\n/)
        .at(-1) ?? ''
    // With HEAD (-I) the file holds the head again, not a body.
    const body = method === 'HEAD' ? Buffer.alloc(0) : await readFile(file).catch(() => Buffer.alloc(0))
    return { status, headers: block, body, seconds }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** {@link curlRequest} with the body as text (GET or HEAD). */
export async function curl(
  node: NetworkNode,
  url: string,
  method: 'GET' | 'HEAD' = 'GET',
  headers: Record<string, string> = {}
): Promise<{ status: number; headers: string; body: string; seconds: number }> {
  const answer = await curlRequest(node, url, method, headers)
  return { ...answer, body: answer.body.toString('utf8') }
}

/** A node of the cluster: its containerd, its mirror process, and a hosts directory naming the mirror first. */
export interface ClusterNode {
  net: NetworkNode
  containerd: ContainerdProcess
  hostsDir: string
  mirror?: ChildProcess
  /** The mirror's last output, for failure messages. */
  log: () => string
  /** Keeps `child`'s output as the node's log. */
  attach(child: ChildProcess): void
  /** `ctr images pull` of `reference` through the node's hosts directory, from inside its namespace. */
  pull(reference: string): Promise<void>
}

/** Starts `net`'s containerd and writes its hosts.toml: the local mirror (127.0.0.1:5000) first, then upstream. */
export async function startClusterNode(
  net: NetworkNode,
  dir: string,
  upstream: string,
  binaries: { containerd: string; ctr: string; local: boolean }
): Promise<ClusterNode> {
  // The Debian 1.6 binaries or 2.x (with `ctr pull --local`), run in the node's namespace.
  const host = await startHost(dir, net.name, { ...binaries, prefix: net.prefix })
  const { containerd, hostsDir } = host
  await mkdir(join(hostsDir, upstream), { recursive: true })
  await writeFile(
    join(hostsDir, upstream, 'hosts.toml'),
    renderHostsToml(`http://${upstream}`, ['http://127.0.0.1:5000'])
  )
  let log = ''
  const node: ClusterNode = {
    net,
    containerd,
    hostsDir,
    log: () => log,
    attach(child) {
      for (const stream of [child.stdout, child.stderr])
        stream?.on('data', (chunk: Buffer) => {
          log = (log + chunk.toString()).slice(-6000)
        })
    },
    async pull(reference) {
      await host.pull(reference)
    }
  }
  return node
}

/** Starts a mirror process in `node`'s namespace and keeps its output for failure messages. */
export function startMirror(node: ClusterNode, file: string, args: readonly string[]): ChildProcess {
  const child = node.net.spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  node.attach(child)
  node.mirror = child
  return child
}

/** The flags both mirrors take alike: the node's containerd and data dir, and serving `/id` for the other. */
function sharedArgs(node: ClusterNode, dataDir: string): string[] {
  return [
    ...['--containerd-sock', node.containerd.socket, '--containerd-content-path', node.containerd.contentDir],
    ...['--data-dir', dataDir, '--bootstrap-kind', 'http', '--http-bootstrap-addr', `:${BOOTSTRAP_PORT}`]
  ]
}

/** Spegel's `registry` on its defaults (`:5000`, `:5001`, `:9090`), bootstrapping from `peer`'s HTTP `/id`. */
export function spegelArgs(
  node: ClusterNode,
  dataDir: string,
  peer: string,
  version: 'main' | 'v0.7.4'
): string[] {
  const bootstrap =
    version === 'main'
      ? ['--http-bootstrap-url', `http://${peer}:${BOOTSTRAP_PORT}/id`]
      : ['--http-bootstrap-peer', `http://${peer}:${BOOTSTRAP_PORT}/id`]
  return ['registry', ...sharedArgs(node, dataDir), ...bootstrap]
}

/**
 * kadmirror's `registry` on the same defaults, with Spegel's flags. `--tag-quorum=1`: the cluster has one other
 * host, so a tag can have one answer (Spegel's behaviour; the default on an open DHT asks two hosts).
 */
export function kadmirrorArgs(
  cli: string,
  node: ClusterNode,
  dataDir: string,
  peer: string,
  extra: readonly string[] = []
): string[] {
  return [
    cli,
    'registry',
    ...sharedArgs(node, dataDir),
    ...['--http-bootstrap-url', `http://${peer}:${BOOTSTRAP_PORT}/id`, '--tag-quorum=1'],
    ...extra
  ]
}

/**
 * What a Spegel node's mirror has answered to GETs under `/v2/` with 200 or 206: body bytes sent, and how many 206
 * answers (ranges) — its `http_response_size_bytes` sums and counts, read from its metrics on :9090 in its namespace.
 */
export async function spegelServed(node: ClusterNode): Promise<{ bytes: number; ranges: number }> {
  const metrics = await curl(node.net, 'http://127.0.0.1:9090/metrics')
  if (metrics.status !== 200) throw new Error(`${node.net.name}'s metrics answered ${metrics.status}`)
  const served = { bytes: 0, ranges: 0 }
  for (const line of metrics.body.split('\n')) {
    const match = /^http_response_size_bytes_(sum|count)\{(.*)\} ([0-9.e+]+)$/.exec(line)
    const labels = match?.[2] ?? ''
    if (!labels.includes('handler="/v2/*"') || !labels.includes('method="GET"')) continue
    if (match?.[1] === 'sum' && /code="20[06]"/.test(labels)) served.bytes += Number(match[3])
    if (match?.[1] === 'count' && labels.includes('code="206"')) served.ranges += Number(match[3])
  }
  return served
}
