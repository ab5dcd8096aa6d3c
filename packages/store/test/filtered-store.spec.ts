import assert from 'node:assert/strict'
import { buildImage } from '@kadmirror/oci'
import { contentStoreConformance, sampleImage } from '../src/conformance.ts'
import { createMemoryStore, filterImages, type ImageFilter, type StoreEvent } from '../src/index.ts'

contentStoreConformance('filterImages (every image allowed)', {
  async setup() {
    const inner = createMemoryStore()
    const store = filterImages(inner, () => true)
    const close = store.close.bind(store)
    store.close = async () => {
      await close()
      await inner.close()
    }
    return {
      store,
      addImage: (reference, image) => inner.addImage(reference, image),
      removeImage: async (reference) => {
        await inner.removeImage(reference)
      }
    }
  },
  async teardown(harness) {
    await harness.store.close()
  }
})

describe('filterImages', () => {
  const noPrivate: ImageFilter = (image) => image !== undefined && !image.startsWith('private.example.com/')
  const shared = new TextEncoder().encode('a layer both images have')

  async function setup() {
    const inner = createMemoryStore()
    const store = filterImages(inner, noPrivate)
    const open = buildImage({ layers: [shared, new TextEncoder().encode('public only')] })
    const secret = buildImage({ layers: [shared, new TextEncoder().encode('secret only')] })
    return {
      inner,
      store,
      open,
      secret,
      async close() {
        await store.close()
        await inner.close()
      }
    }
  }

  async function keysOf(store: ReturnType<typeof filterImages>): Promise<string[]> {
    const keys: string[] = []
    for await (const key of store.keys()) keys.push(key.key)
    return keys.sort()
  }

  it('lists no key of a refused image, and keeps a blob an allowed image also has', async () => {
    const t = await setup()
    await t.inner.addImage('private.example.com/team/app:1', t.secret)
    await t.inner.addImage('example.com/team/app:1', t.open)
    const keys = await keysOf(t.store)
    assert.ok(!keys.includes('private.example.com/team/app:1'))
    assert.ok(keys.includes('example.com/team/app:1'))
    for (const digest of t.secret.blobs.keys()) assert.equal(keys.includes(digest), t.open.blobs.has(digest))
    await t.close()
  })

  it('serves no digest of a refused image, by stat, read, open or tag', async () => {
    const t = await setup()
    await t.inner.addImage('private.example.com/team/app:1', t.secret)
    for (const digest of t.secret.blobs.keys()) {
      assert.equal(await t.store.stat(digest), undefined)
      assert.equal(await t.store.open?.(digest), undefined)
      await assert.rejects(t.store.read(digest), { name: 'ContentNotFoundError' })
    }
    assert.equal(await t.store.resolve('private.example.com/team/app:1'), undefined)
    assert.equal(await t.store.resolve(`private.example.com/team/app@${t.secret.root.digest}`), undefined)
    await t.close()
  })

  it('withdraws a shared blob once the last allowed image holding it is removed', async () => {
    const t = await setup()
    await t.inner.addImage('private.example.com/team/app:1', t.secret)
    await t.inner.addImage('example.com/team/app:1', t.open)
    await t.store.settled()
    const controller = new AbortController()
    const events: StoreEvent[] = []
    const watching = (async () => {
      for await (const event of t.store.subscribe({ signal: controller.signal })) events.push(event)
    })()
    await t.inner.removeImage('example.com/team/app:1')
    const sharedDigest = [...t.open.blobs.keys()].find(
      (d) => t.secret.blobs.has(d) && d !== t.open.root.digest
    )
    const deadline = Date.now() + 2000
    while (!events.some((e) => e.type === 'removed' && e.key.key === sharedDigest) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 10))
    controller.abort()
    await watching
    assert.ok(events.some((e) => e.type === 'removed' && e.key.key === sharedDigest))
    assert.equal(await t.store.stat(sharedDigest as never), undefined)
    assert.ok(await t.inner.stat(sharedDigest as never), 'the wrapped store still holds it')
    await t.close()
  })

  it('refuses content of unnamed images when the filter says so', async () => {
    const inner = createMemoryStore()
    const store = filterImages(inner, (image) => image !== undefined)
    const image = sampleImage('named')
    await inner.addImage('example.com/a:1', image)
    assert.ok((await store.stat(image.root.digest)) !== undefined)
    await store.close()
    await inner.close()
  })
})
