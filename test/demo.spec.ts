// The README's main job (`npm start`) runs the cluster demo; the layout demo is the store-only example.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const root = dirname(dirname(fileURLToPath(import.meta.url)))

describe('layout demo', () => {
  it('prints the advertised keys and the withdrawals of a removed image', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      join(root, 'examples', 'layout-demo', 'src', 'main.ts'),
      '--layer-mib',
      '0.1'
    ])
    assert.match(stdout, /Keys this node would advertise \(16\)/)
    assert.match(stdout, /reference registry\.k8s\.io\/pause:3\.10 -> sha256:[0-9a-f]{64}/)
    assert.match(stdout, /keys to withdraw \(4\):[\s\S]*registry\.k8s\.io\/pause:3\.10/)
  })

  it('exits with a one-line error on a bad option value', async () => {
    await assert.rejects(
      promisify(execFile)(process.execPath, [
        join(root, 'examples', 'layout-demo', 'src', 'main.ts'),
        '--layer-mib',
        'lots'
      ]),
      (err: { code?: number; stderr?: string }) =>
        err.code === 2 && /--layer-mib must be/.test(err.stderr ?? '')
    )
  })
})

describe('cluster demo (npm start)', function () {
  this.timeout(60_000)

  it('pulls an image on the last node from node 1 through the mirrors, answers a miss 404, and misses a deleted tag', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      join(root, 'examples', 'cluster-demo', 'src', 'main.ts'),
      '--layer-mib',
      '0.1'
    ])
    assert.match(stdout, /3 kadmirror daemons on 127\.0\.0\.1 know each other/)
    assert.match(stdout, /HEAD manifests\/1\.0 → 200 sha256:[0-9a-f]{64} \(from node 1,/)
    assert.match(stdout, /6 blobs verified/)
    assert.doesNotMatch(stdout, /WRONG/)
    assert.match(stdout, /a blob nobody has → 404 \{"errors":\[\{"code":"BLOB_UNKNOWN"/)
    assert.match(stdout, /HEAD pause:3\.10 → 404/)
    assert.match(
      stdout,
      /debug page: http:\/\/127\.0\.0\.1:\d+\/debug\/web\/ {3}metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/
    )
  })

  it('exits with a one-line error on a bad node count', async () => {
    await assert.rejects(
      promisify(execFile)(process.execPath, [
        join(root, 'examples', 'cluster-demo', 'src', 'main.ts'),
        '--nodes',
        '1'
      ]),
      (err: { code?: number; stderr?: string }) => err.code === 2 && /--nodes must be/.test(err.stderr ?? '')
    )
  })
})

describe('npm run example', function () {
  this.timeout(60_000)
  const runScript = join(root, 'scripts', 'run.mjs')

  it('runs a package README’s example from the repository root', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [runScript, 'example', 'mirror'], {
      cwd: root
    })
    assert.match(stdout, /A: manifest 200 \(peer\)/)
  })

  it('runs an example program with its arguments', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [runScript, 'example', 'layout-demo', '--layer-mib', '0.1'],
      { cwd: root }
    )
    assert.match(stdout, /Keys this node would advertise/)
  })

  it('exits 2 naming what it can run when the name is unknown', async () => {
    await assert.rejects(
      promisify(execFile)(process.execPath, [runScript, 'example', 'nope'], { cwd: root }),
      (err: { code?: number; stderr?: string }) =>
        err.code === 2 && /examples: .*cluster-demo/.test(err.stderr ?? '')
    )
  })
})
