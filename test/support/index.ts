/**
 * Helpers shared by the packages' tests, the end-to-end suites and the benchmarks. Private to the workspace:
 * published packages never depend on it.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { type AddressInfo, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/**
 * Runs V8's full garbage collection, also in a process started without `--expose-gc` (memory assertions in tests
 * must not count garbage).
 */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}

/**
 * Resolves once `check` returns true, polling every `intervalMs` (default 20 ms). Rejects with
 * "timed out after `ms` ms waiting for `what`" when `ms` (default 10 000) pass first.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = 'condition',
  intervalMs = 20
): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/**
 * Runs the first ```ts block of `<packageDir>/README.md` as written (from a temporary file in the package, so its
 * imports resolve as a user's would) and resolves its standard output. Fails when the README has no such block
 * or the example exits non-zero; the temporary file is removed either way.
 */
export async function runReadmeExample(packageDir: string): Promise<string> {
  const readme = await readFile(join(packageDir, 'README.md'), 'utf8')
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  assert.ok(example !== undefined, `${packageDir}/README.md has no ts example`)
  const file = join(packageDir, 'readme-example.tmp.ts')
  await writeFile(file, example)
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: packageDir })
    return stdout
  } finally {
    await rm(file, { force: true })
  }
}

/** `count` distinct free TCP ports on 127.0.0.1 (bound and released: the caller's servers bind them a moment later). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer().once('error', reject)
          server.listen(0, '127.0.0.1', () => resolve(server))
        })
    )
  )
  const ports = servers.map((server) => (server.address() as AddressInfo).port)
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}
