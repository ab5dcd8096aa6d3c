// The README's example runs as written.
import assert from 'node:assert/strict'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runReadmeExample } from '@kadmirror/test-support'

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))

describe('routing README', function () {
  this.timeout(30_000)

  it('runs its example: the second node finds the first as the provider of a tag, with its registry URL', async () => {
    const stdout = await runReadmeExample(packageDir)
    assert.match(stdout, /^12D3Koo\w+ http:\/\/127\.0\.0\.1:5000$/m)
  })
})
