// The README's example runs as written.
import assert from 'node:assert/strict'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runReadmeExample } from '@kadmirror/test-support'

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))

describe('mirror README', function () {
  this.timeout(30_000)

  it('runs its example: a manifest served from a peer by tag, and a 404 for a blob nobody has', async () => {
    const stdout = await runReadmeExample(packageDir)
    assert.match(stdout, /A: manifest 200 \(peer\)/)
    assert.match(stdout, /^true$/m)
    assert.match(stdout, /A: blob 404 \(miss\)/)
    assert.match(stdout, /BLOB_UNKNOWN/)
  })
})
