/**
 * The node pairs bench/compare runs: two Spegel processes or two kadmirror daemons, each beside its own containerd,
 * on addresses of their own with the default ports (5000 mirror, 5001 router, 9090 metrics), bootstrapped from
 * each other as operators would (Spegel by HTTP `/id`, kadmirror by a static list).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { stopProcess } from '@kadmirror/test-support/daemons'
import type { Host } from '../../test/e2e/fixtures.ts'

/** One running mirror process. */
export interface MirrorProcess {
  url: string
  /** Where a kadmirror node serves /metrics (undefined for Spegel: its memory is read from /proc only). */
  metricsUrl?: string
  pid: number
  stop(): Promise<void>
}

/** Spegel's HTTP bootstrap port (`--http-bootstrap-addr`), beside its default ports. */
const SPEGEL_BOOTSTRAP_PORT = 5002

function watch(child: ChildProcess, name: string): { tail(): string } {
  let log = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-3000)
  })
  child.stdout?.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-3000)
  })
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM' && code !== null) console.error(`${name} exited ${code}:\n${log}`)
  })
  return { tail: () => log }
}

async function ready(url: string, child: ChildProcess, log: { tail(): string }, name: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const status = await fetch(`${url}/readyz`).then(
      (r) => r.status,
      () => 0
    )
    if (status === 200) return
    if (child.exitCode !== null) throw new Error(`${name} exited before it was ready:\n${log.tail()}`)
    if (Date.now() > deadline) throw new Error(`${name} was not ready within 60 s:\n${log.tail()}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

function processOf(child: ChildProcess, url: string): MirrorProcess {
  return {
    url,
    pid: child.pid as number,
    stop: () => stopProcess(child)
  }
}

async function startPair(
  hosts: readonly [Host, Host],
  addresses: readonly [string, string],
  work: string,
  name: string,
  command: (host: Host, self: string, other: string, dataDir: string) => [string, string[]]
): Promise<MirrorProcess[]> {
  const started: { child: ChildProcess; log: { tail(): string }; url: string; name: string }[] = []
  for (const [i, host] of hosts.entries()) {
    const self = addresses[i] as string
    const other = addresses[1 - i] as string
    const dataDir = join(work, `${name}-${i}-data`)
    await mkdir(dataDir, { recursive: true })
    const [file, args] = command(host, self, other, dataDir)
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    started.push({
      child,
      log: watch(child, `${name} ${i}`),
      url: `http://${self}:5000`,
      name: `${name} ${i}`
    })
  }
  const processes = started.map((s) => processOf(s.child, s.url))
  try {
    for (const s of started) await ready(s.url, s.child, s.log, s.name)
  } catch (err) {
    await Promise.all(processes.map((p) => p.stop()))
    throw err
  }
  return processes
}

/** The flags both implementations take alike: the node's containerd, its data dir, the default ports on `self`. */
function nodeArgs(host: Host, self: string, dataDir: string): string[] {
  return [
    ...['--containerd-sock', host.containerd.socket, '--containerd-namespace', 'k8s.io'],
    ...['--containerd-content-path', host.containerd.contentDir, '--data-dir', dataDir],
    ...['--registry-addr', `${self}:5000`, '--router-addr', `${self}:5001`, '--metrics-addr', `${self}:9090`]
  ]
}

/** Two Spegel nodes, each serving its `/id` for the other to bootstrap from. */
export function startSpegelPair(
  binary: string,
  hosts: readonly [Host, Host],
  addresses: readonly [string, string],
  work: string
): Promise<MirrorProcess[]> {
  return startPair(hosts, addresses, work, 'spegel', (host, self, other, dataDir) => [
    binary,
    [
      'registry',
      ...nodeArgs(host, self, dataDir),
      ...['--bootstrap-kind', 'http', '--http-bootstrap-addr', `${self}:${SPEGEL_BOOTSTRAP_PORT}`],
      ...['--http-bootstrap-url', `http://${other}:${SPEGEL_BOOTSTRAP_PORT}/id`]
    ]
  ])
}

/**
 * Two kadmirror daemons (the bundled CLI, so with its own runtime settings). `--tag-quorum=1`: with two nodes there
 * is only one other host to answer a tag (Spegel's behaviour; the default asks two hosts on an open DHT).
 */
export async function startKadmirrorPair(
  cli: string,
  hosts: readonly [Host, Host],
  addresses: readonly [string, string],
  work: string,
  extraArgs: readonly string[] = []
): Promise<MirrorProcess[]> {
  const pair = await startPair(hosts, addresses, work, 'kadmirror', (host, self, other, dataDir) => [
    process.execPath,
    [
      cli,
      'registry',
      ...nodeArgs(host, self, dataDir),
      ...['--bootstrap-kind', 'static', '--static-bootstrap-peers', `/ip4/${other}/tcp/5001`],
      '--tag-quorum=1',
      '--log-level=WARN',
      ...extraArgs
    ]
  ])
  return pair.map((node, i) => ({ ...node, metricsUrl: `http://${addresses[i]}:9090` }))
}
