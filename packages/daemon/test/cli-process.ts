// Runs the kadmirror CLI as a child process, as an operator would: `node src/cli.ts …`.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

/** A finished CLI run. */
export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** A running CLI process. */
export interface CliProcess {
  child: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves when stderr has a line matching `pattern` (JSON log lines), with that line parsed. */
  waitForLog(pattern: RegExp, ms?: number): Promise<Record<string, unknown>>
  /** Sends `signal` (default SIGTERM) and resolves the result once it exits. */
  stop(signal?: NodeJS.Signals): Promise<CliResult>
  exited: Promise<CliResult>
}

/** Starts the CLI with `args`; the environment is the test's plus `env`. */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal, stdout, stderr }) as CliResult)
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async waitForLog(pattern, ms = 60_000) {
      const deadline = Date.now() + ms
      for (;;) {
        const line = stderr.split('\n').find((l) => pattern.test(l))
        if (line !== undefined) return JSON.parse(line) as Record<string, unknown>
        if (child.exitCode !== null)
          throw new Error(`the CLI exited (${child.exitCode}) before logging ${pattern}:\n${stderr}`)
        if (Date.now() > deadline) throw new Error(`no log line ${pattern} within ${ms} ms:\n${stderr}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
}

/** Runs the CLI to its end (killed after `ms`). */
export async function runCli(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  ms = 60_000
): Promise<CliResult> {
  const cli = startCli(args, env)
  const timer = setTimeout(() => cli.child.kill('SIGKILL'), ms)
  try {
    return await cli.exited
  } finally {
    clearTimeout(timer)
  }
}
