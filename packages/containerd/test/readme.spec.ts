// The README's first example (hosts.toml in a temporary directory) runs as written.
import assert from 'node:assert/strict'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runReadmeExample } from '@kadmirror/test-support'

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))

describe('containerd README', function () {
  this.timeout(30_000)

  it('runs its hosts.toml example: two files written, then restored', async () => {
    const stdout = await runReadmeExample(packageDir)
    assert.match(stdout, /'docker\.io\/hosts\.toml', 'ghcr\.io\/hosts\.toml'/)
    assert.match(stdout, /server = "https:\/\/registry-1\.docker\.io"/)
    assert.match(stdout, /\[host\."http:\/\/127\.0\.0\.1:5000"\]/)
    assert.match(stdout, /^true$/m)
  })
})
