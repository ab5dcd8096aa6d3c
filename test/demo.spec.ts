// The README's main job (`npm start`) runs the layout demo: it must run and print what a node advertises.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const root = dirname(dirname(fileURLToPath(import.meta.url)))

describe('layout demo (npm start)', () => {
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
