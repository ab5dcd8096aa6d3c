// A real containerd for tests: its own root, state and socket in a temporary directory (needs root and the
// Debian containerd package). `containerdUnavailable()` says why a suite must skip.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { BuiltImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'

const run = promisify(execFile)
export const CONTAINERD = '/usr/bin/containerd'
export const CTR = '/usr/bin/ctr'

/** Why containerd tests cannot run here, or undefined when they can. */
export function containerdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'containerd tests need root'
  if (!existsSync(CONTAINERD) || !existsSync(CTR))
    return 'containerd is not installed (apt-get install containerd)'
  return undefined
}

/** A running containerd. */
export interface ContainerdProcess {
  dir: string
  socket: string
  contentDir: string
  /** Runs `ctr` against this containerd in `namespace`. */
  ctr(namespace: string, ...args: string[]): Promise<string>
  /** Imports `image` as `reference` (all platforms, not unpacked), as a pull would leave it. */
  importImage(namespace: string, reference: string, image: BuiltImage): Promise<void>
  /** Removes an image and collects its content at once. */
  removeImage(namespace: string, reference: string): Promise<void>
  /** Stops and starts containerd again (same root), as a restart on a node. */
  restart(): Promise<void>
  /** Freezes containerd (SIGSTOP): it holds connections and answers nothing until {@link thaw}. */
  freeze(): void
  /** Lets a frozen containerd go on (SIGCONT). */
  thaw(): void
  stop(): Promise<void>
}

/** Which containerd to run: Debian's by default, or binaries built elsewhere (containerd 2.x). */
export interface ContainerdBinaries {
  containerd: string
  ctr: string
  /** A command prefix both run under (e.g. `ip netns exec <ns>`: a node's network namespace). */
  prefix?: string[]
}

/** Starts containerd with the CRI plugin off, everything under a new temporary directory. */
export async function startContainerd(
  binaries: ContainerdBinaries = { containerd: CONTAINERD, ctr: CTR }
): Promise<ContainerdProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'kadmirror-containerd-'))
  const socket = join(dir, 'containerd.sock')
  const config = join(dir, 'config.toml')
  await writeFile(
    config,
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[debug]
  address = "${dir}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
`
  )
  let child: ChildProcess | undefined
  const ctr = async (namespace: string, ...args: string[]): Promise<string> => {
    const [file, ...pre] = [...(binaries.prefix ?? []), binaries.ctr]
    return (await run(file as string, [...pre, '-a', socket, '-n', namespace, ...args])).stdout
  }
  const start = async (): Promise<void> => {
    const [file, ...pre] = [...(binaries.prefix ?? []), binaries.containerd]
    child = spawn(file as string, [...pre, '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] })
    let log = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4000)
    })
    // A loaded machine (CI running the e2e suites) has taken more than 10 s to answer the first `ctr version`.
    const deadline = Date.now() + 30_000
    for (;;) {
      try {
        await ctr('default', 'version')
        return
      } catch {
        if (child.exitCode !== null || Date.now() > deadline) {
          // Stopped here: a containerd left running keeps the test process from ever exiting.
          await stopChild()
          throw new Error(`containerd did not start:\n${log}`)
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  }
  const stopChild = async (): Promise<void> => {
    if (child === undefined || child.exitCode !== null) return
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
  await start()
  return {
    dir,
    socket,
    contentDir: join(dir, 'root', 'io.containerd.content.v1.content'),
    ctr,
    async importImage(namespace, reference, image) {
      const layout = await mkdtemp(join(dir, 'import-'))
      const store = await openOciLayoutStore({ directory: layout, create: true, watch: false })
      await store.addImage(reference, image)
      await store.close()
      await run('tar', ['-C', layout, '-cf', `${layout}.tar`, '.'])
      await ctr(namespace, 'images', 'import', '--all-platforms', '--no-unpack', `${layout}.tar`)
      await rm(layout, { recursive: true, force: true })
      await rm(`${layout}.tar`, { force: true })
    },
    async removeImage(namespace, reference) {
      await ctr(namespace, 'images', 'rm', '--sync', reference)
    },
    async restart() {
      await stopChild()
      await start()
    },
    freeze() {
      child?.kill('SIGSTOP')
    },
    thaw() {
      child?.kill('SIGCONT')
    },
    async stop() {
      await stopChild()
      await rm(dir, { recursive: true, force: true })
    }
  }
}
