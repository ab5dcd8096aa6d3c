import assert from 'node:assert/strict'
import { contentStoreConformance, sampleImage } from '../src/conformance.ts'
import { createMemoryStore } from '../src/index.ts'

contentStoreConformance('MemoryStore', {
  async setup() {
    const store = createMemoryStore()
    return {
      store,
      addImage: (reference, image) => store.addImage(reference, image),
      removeImage: async (reference) => {
        await store.removeImage(reference)
      }
    }
  },
  async teardown(harness) {
    await harness.store.close()
  }
})

describe('MemoryStore', () => {
  it('drops the blobs of a removed image that no other image uses', async () => {
    const store = createMemoryStore()
    const image = sampleImage('dropped')
    await store.addImage('example.com/a:1', image)
    assert.equal(await store.removeImage('example.com/a:1'), true)
    for (const digest of image.blobs.keys()) assert.equal(await store.stat(digest), undefined)
    await store.close()
  })

  it('resolves false when removing a tag it does not have', async () => {
    const store = createMemoryStore()
    assert.equal(await store.removeImage('example.com/none:1'), false)
    await store.close()
  })
})
