/**
 * The runtime settings a `kadmirror registry` process gives itself, because a node runs under a memory budget
 * (GEP-0043's `MemoryMax=100M`, Spegel's chart's 128 MiB limit). Some can only be set before the process starts —
 * V8's young generation size and glibc's malloc tunables — so the registry command replaces its own process
 * image once (`process.execve`, the same pid, as systemd and kubelet expect) with them added. Set
 * `KADMIRROR_RUNTIME=as-is` to run without; settings already in the environment or on node's command line win.
 * What each one saves is measured in bench/compare and listed in the daemon README.
 */

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { HEAP_GROWING_PERCENT, RUNTIME_MALLOC_ENV, RUNTIME_NODE_OPTIONS } from './constants.ts'

/** The environment variable that marks a tuned process (`tuned`) or asks for none (`as-is`). */
export const RUNTIME_MARKER_ENV = 'KADMIRROR_RUNTIME'

/** The node options and environment to run `argv` with; undefined when the process already has them. */
export function tunedExec(
  execArgv: readonly string[],
  env: NodeJS.ProcessEnv
): { nodeArgs: string[]; env: Record<string, string> } | undefined {
  if (env[RUNTIME_MARKER_ENV] !== undefined) return undefined
  const given = (option: string): boolean =>
    [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)].some(
      (arg) => arg.split('=')[0] === option.split('=')[0]
    )
  const nodeArgs = RUNTIME_NODE_OPTIONS.filter((option) => !given(option))
  const added: Record<string, string> = { [RUNTIME_MARKER_ENV]: 'tuned' }
  for (const [name, value] of Object.entries(RUNTIME_MALLOC_ENV))
    if (env[name] === undefined) added[name] = value
  return { nodeArgs: [...nodeArgs, ...execArgv], env: added }
}

/**
 * Re-runs this process with the runtime settings when it lacks them (returns only when it need not, or cannot:
 * a Node without `process.execve` runs as it is).
 */
export function execTuned(): void {
  const plan = tunedExec(process.execArgv, process.env)
  const script = process.argv[1]
  if (plan === undefined || script === undefined || typeof process.execve !== 'function') return
  const env = Object.fromEntries(
    Object.entries({ ...process.env, ...plan.env }).filter(
      (entry): entry is [string, string] => entry[1] !== undefined
    )
  )
  process.execve(
    process.execPath,
    [process.execPath, ...plan.nodeArgs, script, ...process.argv.slice(2)],
    env
  )
}

/** Settings that can be made from inside the running process. */
export function tuneRunningProcess(): void {
  // libp2p keeps small views into pool slabs for as long as a connection lives: no pool (bench/dht).
  Buffer.poolSize = 0
  // Keep V8's old generation near the live heap, as a memory-budgeted node needs (bench/dht).
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}

/**
 * A function that runs V8's most thorough garbage collection in this process (the one it runs before giving up on
 * memory: several full collections, and the heap pages they free given back to the system rather than kept for
 * reuse — a plain full collection keeps them). V8's `gc` is exposed at run time to a context of its own (the
 * process's global object gets no `gc`).
 */
export function fullGarbageCollection(): () => void {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as (options: {
    type: 'major'
    execution: 'sync'
    flavor: 'last-resort'
  }) => void
  return () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
}
