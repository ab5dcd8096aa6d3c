import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePorts } from '@kadmirror/test-support'
import { bundledCli, startDaemon, stopDaemons } from '@kadmirror/test-support/daemons'
import { RUNTIME_MALLOC_ENV, RUNTIME_NODE_OPTIONS } from '../src/constants.ts'
import { RUNTIME_MARKER_ENV, tunedExec } from '../src/runtime.ts'

const run = promisify(execFile)

/** A process's environment and command line, from /proc. */
async function processFacts(pid: number): Promise<{ env: Record<string, string>; argv: string[] }> {
  const split = (text: string) => text.split('\0').filter((s) => s !== '')
  const env = Object.fromEntries(
    split(await readFile(`/proc/${pid}/environ`, 'utf8')).map((kv) => [
      kv.slice(0, kv.indexOf('=')),
      kv.slice(kv.indexOf('=') + 1)
    ])
  )
  return { env, argv: split(await readFile(`/proc/${pid}/cmdline`, 'utf8')) }
}

describe('the registry process runtime settings', () => {
  it('adds the V8 options and malloc settings a process lacks, marking it tuned', () => {
    const plan = tunedExec([], {})
    assert.deepEqual(plan, {
      nodeArgs: [...RUNTIME_NODE_OPTIONS],
      env: { [RUNTIME_MARKER_ENV]: 'tuned', ...RUNTIME_MALLOC_ENV }
    })
  })

  it('keeps the settings an operator gave on the command line, in NODE_OPTIONS or in the environment', () => {
    const plan = tunedExec(['--max-semi-space-size=8'], { MALLOC_ARENA_MAX: '4' })
    assert.deepEqual(plan?.nodeArgs, ['--max-semi-space-size=8'])
    assert.equal(plan?.env.MALLOC_ARENA_MAX, undefined)
    assert.deepEqual(tunedExec([], { NODE_OPTIONS: '--max-semi-space-size=16' })?.nodeArgs, [])
  })

  it('changes nothing in a process already tuned or asked to run as it is', () => {
    assert.equal(tunedExec([], { [RUNTIME_MARKER_ENV]: 'tuned' }), undefined)
    assert.equal(tunedExec([], { [RUNTIME_MARKER_ENV]: 'as-is' }), undefined)
  })
})

describe('the bundled daemon (one file, as operators run it)', function () {
  this.timeout(120_000)
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-bundle-'))
    await mkdir(join(dir, 'layout'))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('prints its version with only the Node runtime', async () => {
    const { stdout } = await run(process.execPath, [await bundledCli(), 'version', '--format=json'], {
      cwd: dir
    })
    assert.match(JSON.parse(stdout).version, /^\d+\.\d+\.\d+/)
  })

  it('serves as a registry in the same process, re-run once with the runtime settings', async () => {
    const [registry, router, metrics] = await freePorts(3)
    const daemon = await startDaemon({
      name: 'bundled',
      cli: await bundledCli(),
      store: join(dir, 'layout'),
      dataDir: join(dir, 'data'),
      ports: { registry: registry as number, router: router as number, metrics: metrics as number },
      peers: ['/ip4/127.0.0.1/tcp/1']
    })
    try {
      const facts = await processFacts(daemon.process.pid as number)
      assert.equal(facts.env[RUNTIME_MARKER_ENV], 'tuned')
      for (const [name, value] of Object.entries(RUNTIME_MALLOC_ENV)) assert.equal(facts.env[name], value)
      for (const option of RUNTIME_NODE_OPTIONS) assert.ok(facts.argv.includes(option), facts.argv.join(' '))
      const res = await fetch(
        `${daemon.registryUrl}/v2/library/x/blobs/sha256:${'0'.repeat(64)}?ns=docker.io`
      )
      assert.equal(res.status, 404)
      assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'BLOB_UNKNOWN')
    } finally {
      await stopDaemons([daemon])
    }
  })
})
