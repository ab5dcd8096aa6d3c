/**
 * A network of Linux network namespaces made by a test: one namespace per node, each with an `eth0` on
 * 192.0.2.0/24 (TEST-NET-1) joined by a bridge in a namespace of its own, as hosts on one LAN. Processes run in a
 * node's namespace with {@link NetworkNode.spawn} / {@link NetworkNode.run}; nothing reaches the test's own
 * namespace, and {@link TestNetwork.close} removes every namespace (and with them the links). Needs root and
 * iproute2.
 */
import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process'
import { promisify } from 'node:util'

const exec = promisify(execFile)

/** One host of the network. */
export interface NetworkNode {
  name: string
  namespace: string
  /** Its address on the LAN (192.0.2.x). */
  address: string
  /** The command prefix that runs a program in this namespace. */
  prefix: string[]
  /** Runs a program in the namespace to its end. */
  run(
    file: string,
    args: readonly string[],
    options?: { timeout?: number }
  ): Promise<{ stdout: string; stderr: string }>
  /** Starts a program in the namespace. */
  spawn(file: string, args: readonly string[], options?: SpawnOptions): ChildProcess
}

/** The namespaces a test made. */
export interface TestNetwork {
  nodes: Record<string, NetworkNode>
  /** Removes every namespace. Idempotent. */
  close(): Promise<void>
}

/** Why namespaces cannot be made here, or undefined. */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'it needs root to make network namespaces'
  try {
    await exec('ip', ['-V'])
  } catch {
    return 'iproute2 (the ip command) is not installed'
  }
  return undefined
}

/** Makes one namespace per name, node i at 192.0.2.(10 + i), all on one bridge. */
export async function createNetwork(names: readonly string[]): Promise<TestNetwork> {
  const tag = `km${process.pid % 100_000}`
  const made: string[] = []
  const close = async (): Promise<void> => {
    for (const namespace of made.splice(0).reverse())
      await exec('ip', ['netns', 'del', namespace]).catch(() => {})
  }
  try {
    const bridgeNs = `${tag}-lan`
    await exec('ip', ['netns', 'add', bridgeNs])
    made.push(bridgeNs)
    await exec('ip', ['-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge'])
    await exec('ip', ['-n', bridgeNs, 'link', 'set', 'br0', 'up'])
    const nodes: Record<string, NetworkNode> = {}
    for (const [i, name] of names.entries()) {
      const namespace = `${tag}-${i}`
      const address = `192.0.2.${10 + i}`
      await exec('ip', ['netns', 'add', namespace])
      made.push(namespace)
      const port = `${tag}p${i}`
      await exec('ip', [
        'link',
        'add',
        port,
        'netns',
        bridgeNs,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        namespace
      ])
      await exec('ip', ['-n', bridgeNs, 'link', 'set', port, 'master', 'br0', 'up'])
      await exec('ip', ['-n', namespace, 'addr', 'add', `${address}/24`, 'dev', 'eth0'])
      await exec('ip', ['-n', namespace, 'link', 'set', 'eth0', 'up'])
      await exec('ip', ['-n', namespace, 'link', 'set', 'lo', 'up'])
      const prefix = ['ip', 'netns', 'exec', namespace]
      nodes[name] = {
        name,
        namespace,
        address,
        prefix,
        run: (file, args, options) =>
          exec('ip', ['netns', 'exec', namespace, file, ...args], { ...options, encoding: 'utf8' }),
        spawn: (file, args, options = {}) => spawn('ip', ['netns', 'exec', namespace, file, ...args], options)
      }
    }
    return { nodes, close }
  } catch (err) {
    await close()
    throw err
  }
}
