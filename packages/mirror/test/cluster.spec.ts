// Mirrors on a real libp2p cluster over TCP on 127.0.0.1: the pull sequence containerd sends, hit and miss.
import assert from 'node:assert/strict'
import { type BuiltImage, buildImage, type Digest, digestOf, walkImage } from '@kadmirror/oci'
import { type Advertiser, createAdvertiser, type Libp2pRouter } from '@kadmirror/routing'
import { errorCode, get, type MirrorNode, randomBytes, startLibp2pNode, waitFor } from './fixtures.ts'

describe('mirror on a libp2p cluster', function () {
  this.timeout(60_000)
  let nodes: MirrorNode[]
  let advertisers: Advertiser[]
  let image: BuiltImage

  before(async () => {
    image = buildImage({ layers: [randomBytes(3 * 1024 * 1024, 11), randomBytes(100_000, 12)] })
    const first = await startLibp2pNode()
    const seed = first.router as Libp2pRouter
    nodes = [first, ...(await Promise.all([startLibp2pNode(seed), startLibp2pNode(seed)]))]
    await waitFor(
      () => nodes.every((n) => (n.router as Libp2pRouter).peers().length === 2),
      20_000,
      'a full mesh'
    )
    advertisers = nodes.map((n) => createAdvertiser({ store: n.store, router: n.router }))
    await Promise.all(advertisers.map((a) => a.start()))
    await (nodes[0] as MirrorNode).store.addImage('registry.example.com:5050/team/app:v1', image)
    await waitFor(async () => {
      for await (const _ of (nodes[2] as MirrorNode).router.lookup(image.root.digest)) return true
      return false
    })
  })

  after(async () => {
    await Promise.all(advertisers.map((a) => a.close()))
    await Promise.all(nodes.map((n) => n.close()))
  })

  it('pulls a whole image through another node as containerd does: HEAD tag, GET manifest, GET each blob', async () => {
    const b = nodes[1] as MirrorNode
    const ns = '?ns=registry.example.com%3A5050'
    const head = await get(b.url, `/v2/team/app/manifests/v1${ns}`, {}, 'HEAD')
    assert.equal(head.status, 200)
    const digest = head.headers['docker-content-digest'] as Digest
    assert.equal(digest, image.root.digest)
    const fetched = new Map<Digest, Buffer>()
    for await (const entry of walkImage(image.root, async (d) => {
      const res = await get(b.url, `/v2/team/app/manifests/${d.digest}${ns}`)
      assert.equal(res.status, 200)
      return res.body
    })) {
      if (entry.descriptor.digest === image.root.digest) continue
      const res = await get(b.url, `/v2/team/app/blobs/${entry.descriptor.digest}${ns}`)
      fetched.set(entry.descriptor.digest, res.body)
    }
    for (const [d, bytes] of fetched) assert.equal(digestOf(bytes), d)
    assert.equal(fetched.size, image.blobs.size - 1)
  })

  it('answers 404 BLOB_UNKNOWN on every node for a blob no node has', async () => {
    for (const n of nodes) {
      const res = await get(n.url, `/v2/team/app/blobs/${digestOf('absent')}?ns=registry.example.com%3A5050`)
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'BLOB_UNKNOWN')
    }
  })

  it('falls back to 404 once the image is removed from the only node that had it', async () => {
    const [a, , c] = nodes as [MirrorNode, MirrorNode, MirrorNode]
    const removed = buildImage({ layers: [Buffer.from('short-lived layer')] })
    await a.store.addImage('registry.example.com:5050/team/gone:v1', removed)
    const path = `/v2/team/gone/manifests/${removed.root.digest}?ns=registry.example.com%3A5050`
    await waitFor(async () => (await get(c.url, path)).status === 200, 10_000, 'the image on node C')
    await a.store.removeImage('registry.example.com:5050/team/gone:v1')
    await waitFor(async () => (await get(c.url, path)).status === 404, 10_000, 'the withdrawal on node C')
  })
})
