// The README's first example (hosts.toml in a temporary directory) runs as written.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))

describe('containerd README', function () {
  this.timeout(30_000)

  it('runs its hosts.toml example: two files written, then restored', async () => {
    const readme = await readFile(join(packageDir, 'README.md'), 'utf8')
    const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
    assert.ok(example !== undefined)
    const file = join(packageDir, 'readme-example.tmp.ts')
    await writeFile(file, example)
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: packageDir })
      assert.match(stdout, /'docker\.io\/hosts\.toml', 'ghcr\.io\/hosts\.toml'/)
      assert.match(stdout, /server = "https:\/\/registry-1\.docker\.io"/)
      assert.match(stdout, /\[host\."http:\/\/127\.0\.0\.1:5000"\]/)
      assert.match(stdout, /^true$/m)
    } finally {
      await rm(file, { force: true })
    }
  })
})
