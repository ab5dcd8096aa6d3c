import assert from 'node:assert/strict'
import { buildImage } from '@kadmirror/oci'
import { createMemoryStore } from '@kadmirror/store'
import { createNode } from '../src/index.ts'

describe('registry filters on a node', function () {
  this.timeout(30_000)

  it('advertises no key of a filtered image, and still advertises the others', async () => {
    const store = createMemoryStore()
    const secret = buildImage({ layers: [new TextEncoder().encode('secret layer')] })
    const open = buildImage({ layers: [new TextEncoder().encode('open layer')] })
    await store.addImage('private.example.com/team/app:1', secret)
    await store.addImage('example.com/team/app:1', open)
    const node = await createNode({
      store: { kind: 'custom', store },
      registry: { host: '127.0.0.1', port: 0 },
      metrics: false,
      debugWeb: false,
      router: { listen: ['/ip4/127.0.0.1/tcp/0'], allowLoopback: true },
      mirror: { filters: [/^private\.example\.com\//] }
    })
    try {
      assert.deepEqual([...node.advertiser.counts().keys()], ['example.com'])
      assert.equal(node.advertiser.size(), open.blobs.size + 1)
    } finally {
      await node.close()
      await store.close()
    }
  })
})
