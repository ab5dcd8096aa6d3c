import assert from 'node:assert/strict'
import { buildImage } from '@kadmirror/oci'
import { createMemoryStore, type MemoryStore } from '@kadmirror/store'
import { type Advertiser, createAdvertiser, createMemoryNetwork, type Router } from '../src/index.ts'
import { waitFor } from './cluster.ts'

/** A router that records what it is asked, on top of a memory router. */
function recordingRouter(inner: Router) {
  const calls: Array<{ op: 'advertise' | 'withdraw'; keys: string[] }> = []
  const router: Router = {
    ...inner,
    lookup: (key, options) => inner.lookup(key, options),
    advertise: async (keys) => {
      calls.push({ op: 'advertise', keys: [...keys] })
      await inner.advertise(keys)
    },
    withdraw: async (keys) => {
      calls.push({ op: 'withdraw', keys: [...keys] })
      await inner.withdraw(keys)
    }
  }
  return { router, calls }
}

const layer = (text: string) => new TextEncoder().encode(text)

describe('Advertiser', () => {
  let store: MemoryStore
  let advertiser: Advertiser | undefined

  beforeEach(() => {
    store = createMemoryStore()
  })

  afterEach(async () => {
    await advertiser?.close()
    await store.close()
  })

  it('advertises every key of the store on start, where peers find them', async () => {
    const network = createMemoryNetwork()
    const own = network.createRouter({ registryUrl: 'http://node-a:5000' })
    const peer = network.createRouter({ registryUrl: 'http://node-b:5000' })
    const image = buildImage({ layers: [layer('a')] })
    await store.addImage('example.com/app:1', image)
    advertiser = createAdvertiser({ store, router: own })
    await advertiser.start()
    for (const key of [...image.blobs.keys(), 'example.com/app:1']) {
      const found = []
      for await (const provider of peer.lookup(key)) found.push(provider.registryUrl)
      assert.deepEqual(found, ['http://node-a:5000'], key)
    }
  })

  it('advertises an image added later and withdraws one removed', async () => {
    const { router, calls } = recordingRouter(
      createMemoryNetwork().createRouter({ registryUrl: 'http://a:5000' })
    )
    advertiser = createAdvertiser({ store, router, eventDebounceMs: 5 })
    await advertiser.start()
    const image = buildImage({ layers: [layer('later')] })
    await store.addImage('example.com/later:1', image)
    await waitFor(
      () => calls.some((c) => c.op === 'advertise' && c.keys.includes('example.com/later:1')),
      2000,
      'the new tag to be advertised'
    )
    await store.removeImage('example.com/later:1')
    await waitFor(
      () => calls.some((c) => c.op === 'withdraw' && c.keys.includes(image.root.digest)),
      2000,
      'the removed digest to be withdrawn'
    )
    assert.equal(advertiser.size(), 0)
  })

  it('counts advertised keys per registry', async () => {
    await store.addImage('example.com/app:1', buildImage({ layers: [layer('x')] }))
    await store.addImage('registry.k8s.io/pause:3.10', buildImage({ layers: [layer('y')] }))
    advertiser = createAdvertiser({
      store,
      router: createMemoryNetwork().createRouter({ registryUrl: 'http://a:5000' })
    })
    await advertiser.start()
    assert.deepEqual(Object.fromEntries(advertiser.counts()), { 'example.com': 4, 'registry.k8s.io': 4 })
  })

  it('counts advertised tags, image digests and content digests per registry', async () => {
    await store.addImage('example.com/app:1', buildImage({ layers: [layer('x')] }))
    await store.addImage('example.com/app:2', buildImage({ layers: [layer('z'), layer('w')] }))
    advertiser = createAdvertiser({
      store,
      router: createMemoryNetwork().createRouter({ registryUrl: 'http://a:5000' })
    })
    await advertiser.start()
    // Per image: a tag, its manifest, its config and its layers.
    assert.deepEqual(Object.fromEntries(advertiser.kinds()), {
      'example.com': { tags: 2, imageDigests: 2, contentDigests: 7 }
    })
  })

  it('reprovides every key once per TTL, spread over the TTL', async () => {
    const image = buildImage({ layers: [layer('1'), layer('2'), layer('3'), layer('4')] })
    await store.addImage('example.com/app:1', image)
    const { router, calls } = recordingRouter(
      createMemoryNetwork().createRouter({ registryUrl: 'http://a:5000' })
    )
    advertiser = createAdvertiser({ store, router, ttlMs: 400, tickMs: 10 })
    await advertiser.start()
    calls.length = 0
    await new Promise((resolve) => setTimeout(resolve, 900))
    const counts = new Map<string, number>()
    for (const call of calls) for (const key of call.keys) counts.set(key, (counts.get(key) ?? 0) + 1)
    assert.equal(counts.size, advertiser.size())
    for (const [key, count] of counts)
      assert.ok(count >= 2 && count <= 3, `${key} reprovided ${count} times in 2.25 TTLs`)
    assert.ok(calls.length > 1, 'reprovides went out in several batches, not all at once')
  })

  it('hands the router at most batchSize keys per call', async () => {
    for (let i = 0; i < 30; i++)
      await store.addImage(`example.com/app:${i}`, buildImage({ layers: [layer(`layer ${i}`)] }))
    const { router, calls } = recordingRouter(
      createMemoryNetwork().createRouter({ registryUrl: 'http://a:5000' })
    )
    advertiser = createAdvertiser({ store, router, batchSize: 16 })
    await advertiser.start()
    assert.equal(
      calls.reduce((n, c) => n + c.keys.length, 0),
      advertiser.size()
    )
    assert.ok(calls.every((c) => c.keys.length <= 16))
  })

  it('retries on the next tick when the router fails', async () => {
    await store.addImage('example.com/app:1', buildImage({ layers: [layer('z')] }))
    const inner = createMemoryNetwork().createRouter({ registryUrl: 'http://a:5000' })
    let failures = 1
    const attempts: number[] = []
    const router: Router = {
      ...inner,
      lookup: (key, options) => inner.lookup(key, options),
      advertise: async (keys) => {
        attempts.push(keys.length)
        if (failures-- > 0) throw new Error('no peers yet')
        await inner.advertise(keys)
      }
    }
    advertiser = createAdvertiser({ store, router, tickMs: 10 })
    await advertiser.start()
    await waitFor(() => attempts.length >= 2, 2000, 'a retry')
    assert.equal(attempts[1], attempts[0])
  })
})
