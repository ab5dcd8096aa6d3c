// The README's example runs as written.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))

describe('mirror README', function () {
  this.timeout(30_000)

  it('runs its example: a manifest served from a peer by tag, and a 404 for a blob nobody has', async () => {
    const readme = await readFile(join(packageDir, 'README.md'), 'utf8')
    const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
    assert.ok(example !== undefined)
    const file = join(packageDir, 'readme-example.tmp.ts')
    await writeFile(file, example)
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: packageDir })
      assert.match(stdout, /A: manifest 200 \(peer\)/)
      assert.match(stdout, /^true$/m)
      assert.match(stdout, /A: blob 404 \(miss\)/)
      assert.match(stdout, /BLOB_UNKNOWN/)
    } finally {
      await rm(file, { force: true })
    }
  })
})
