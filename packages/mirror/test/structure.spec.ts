import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { readmeErrorCodes } from '@kadmirror/test-support/source-checks'
import { MIRROR_ERROR_CODES } from '../src/errors.ts'

describe('mirror package structure', () => {
  it('lists every error code in the README, and no other', async () => {
    const readme = fileURLToPath(new URL('../README.md', import.meta.url))
    assert.deepEqual((await readmeErrorCodes(readme)).sort(), [...MIRROR_ERROR_CODES].sort())
  })
})
