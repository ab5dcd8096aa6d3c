import assert from 'node:assert/strict'
import type { Digest } from '@kadmirror/oci'
import { INFO_CACHE_MS, sharedInfo } from '../src/info-cache.ts'

const digest = `sha256:${'a'.repeat(64)}` as Digest

describe('shared content Info', () => {
  it('asks containerd once for calls on one digest made while the first is under way', async () => {
    let calls = 0
    const info = sharedInfo(async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 10))
      return 42
    })
    assert.deepEqual(await Promise.all([info(digest), info(digest), info(digest)]), [42, 42, 42])
    assert.equal(calls, 1)
  })

  it('remembers a blob found for a moment, then asks again', async () => {
    let clock = 0
    let calls = 0
    const info = sharedInfo(
      async () => {
        calls++
        return 7
      },
      () => clock
    )
    await info(digest)
    clock += INFO_CACHE_MS - 1
    await info(digest)
    assert.equal(calls, 1)
    clock += 2
    await info(digest)
    assert.equal(calls, 2)
  })

  it('does not remember a blob that was not found', async () => {
    let calls = 0
    const info = sharedInfo(async () => {
      calls++
      return undefined
    })
    assert.equal(await info(digest), undefined)
    assert.equal(await info(digest), undefined)
    assert.equal(calls, 2)
  })
})
