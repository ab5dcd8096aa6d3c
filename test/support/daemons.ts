/**
 * `kadmirror registry` daemons as separate processes on loopback, as an operator runs them — each with an OCI-layout
 * store of its own and static bootstrap to the others — and what the cluster demo and bench/daemon read from them
 * (readiness, peer id, JSON log lines, pid).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export { freePorts } from './index.ts'

/** The daemon's CLI, run as an operator would run `kadmirror`. */
export const DAEMON_CLI = fileURLToPath(new URL('../../packages/daemon/src/cli.ts', import.meta.url))

let bundling: Promise<string> | undefined

/**
 * The daemon as operators run it — one bundled file (packages/daemon/scripts/bundle.mjs) — built once per process
 * into a temporary directory; resolves its CLI's path.
 */
export function bundledCli(): Promise<string> {
  bundling ??= (async () => {
    const script = new URL('../../packages/daemon/scripts/bundle.mjs', import.meta.url).href
    const { bundleDaemon } = (await import(script)) as { bundleDaemon: (out: string) => Promise<string> }
    const dir = await mkdtemp(join(tmpdir(), 'kadmirror-app-'))
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
    return bundleDaemon(dir)
  })()
  return bundling
}

/** One running daemon. */
export interface Daemon {
  name: string
  process: ChildProcess
  registryUrl: string
  metricsUrl: string
  peerId: string
  /** The JSON log lines it wrote so far. */
  logs: Array<Record<string, unknown>>
}

/** What one daemon is started with. */
export interface DaemonSpec {
  name: string
  store: string
  dataDir: string
  ports: { registry: number; router: number; metrics: number }
  /** The other daemons' router multiaddrs. */
  peers: string[]
  /** More flags for `kadmirror registry`. */
  extraArgs?: string[]
  /** The CLI to run: default {@link DAEMON_CLI} (the sources); {@link bundledCli} gives the bundle operators run. */
  cli?: string
  /** Options for node before the CLI (V8 flags). */
  nodeArgs?: string[]
  /** More environment variables. */
  env?: Record<string, string>
  /** A command the daemon runs under (`node` and its arguments follow it), e.g. a shell that joins a cgroup. */
  prefix?: string[]
}

async function until(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Starts one daemon and resolves once it serves; rejects with its last log lines if it exits first. */
export async function startDaemon(spec: DaemonSpec): Promise<Daemon> {
  const { registry, router, metrics } = spec.ports
  const args = [
    ...['registry', '--bootstrap-kind=static', '--static-bootstrap-peers', ...spec.peers],
    ...[`--store=oci-layout:${spec.store}`, `--data-dir=${spec.dataDir}`, '--allow-loopback'],
    ...[
      `--registry-addr=127.0.0.1:${registry}`,
      `--router-addr=127.0.0.1:${router}`,
      `--metrics-addr=127.0.0.1:${metrics}`
    ]
  ]
  const cli = spec.cli ?? DAEMON_CLI
  const [file, ...prefixArgs] = [...(spec.prefix ?? []), process.execPath]
  const nodeArgs = [...(spec.nodeArgs ?? []), cli, ...args, ...(spec.extraArgs ?? [])]
  const child = spawn(file as string, [...prefixArgs, ...nodeArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...spec.env }
  })
  const logs: Array<Record<string, unknown>> = []
  let pending = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    pending += chunk.toString()
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) if (line.startsWith('{')) logs.push(JSON.parse(line))
  })
  const metricsUrl = `http://127.0.0.1:${metrics}`
  let metadata: { libp2p: { id: string } } | undefined
  // The metrics server starts last: once it answers, the daemon serves (whatever its log level).
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`${spec.name} exited: ${JSON.stringify(logs.slice(-3))}`)
      const res = await fetch(`${metricsUrl}/debug/web/metadata`).catch(() => undefined)
      metadata = res?.status === 200 ? ((await res.json()) as { libp2p: { id: string } }) : undefined
      return metadata !== undefined
    },
    30_000,
    `${spec.name} to start`
  )
  return {
    name: spec.name,
    process: child,
    registryUrl: `http://127.0.0.1:${registry}`,
    metricsUrl,
    peerId: (metadata as { libp2p: { id: string } }).libp2p.id,
    logs
  }
}

/** Waits until every daemon answers `/readyz` with 200 (it knows a peer). */
export function allReady(daemons: readonly Daemon[]): Promise<void> {
  return until(
    async () =>
      (
        await Promise.all(
          daemons.map((d) =>
            fetch(`${d.registryUrl}/readyz`).then(
              (r) => r.status,
              () => 0
            )
          )
        )
      ).every((s) => s === 200),
    30_000,
    'every daemon ready'
  )
}

/** Stops the daemons with SIGTERM (SIGKILL after 15 s) and resolves when all have exited. */
export async function stopDaemons(daemons: readonly Daemon[]): Promise<void> {
  await Promise.all(daemons.map(({ process: child }) => stopProcess(child)))
}

/** Stops a process with SIGTERM (SIGKILL after 15 s) and resolves once it exited; nothing when it already has. */
export async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
}
