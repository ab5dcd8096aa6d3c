/**
 * Load spread: a node caps the blobs it serves to peers at once and answers 429 over the cap, so the asking mirror
 * moves on to another provider at once (not a containerd-visible error); providers are chosen nearest first, with
 * randomness, so that many askers do not all pick the same one.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { type BuiltImage, buildImage, type Digest } from '@kadmirror/oci'
import { createMemoryNetwork, type MemoryNetwork, type Provider } from '@kadmirror/routing'
import type { PeerFailureEvent, ResponseEvent } from '../src/index.ts'
import { PeerAvoidList, PeerRtt, ProviderQueue, spreadOrder } from '../src/peers.ts'
import { get, holdImage, type MirrorNode, randomBytes, startMemoryNode, waitFor } from './fixtures.ts'

const LAYER_BYTES = 8 * 1024 * 1024

describe('load spread', function () {
  this.timeout(30_000)
  let network: MemoryNetwork
  let nodes: MirrorNode[]
  let image: BuiltImage
  let layer: Digest
  const path = () => `/v2/team/app/blobs/${layer}?ns=example.com`
  const held: { destroy(): void }[] = []

  before(() => {
    image = buildImage({ layers: [randomBytes(LAYER_BYTES, 5)] })
    layer = [...image.blobs.keys()].find(
      (d) => (image.blobs.get(d)?.byteLength ?? 0) === LAYER_BYTES
    ) as Digest
  })
  beforeEach(() => {
    network = createMemoryNetwork()
    nodes = []
  })
  afterEach(async () => {
    for (const h of held.splice(0)) h.destroy()
    await Promise.all(nodes.map((n) => n.close()))
  })

  async function node(options: Parameters<typeof startMemoryNode>[1] = {}): Promise<MirrorNode> {
    const started = await startMemoryNode(network, { maxPieceProviders: 1, ...options })
    nodes.push(started)
    return started
  }
  async function holder(options: Parameters<typeof startMemoryNode>[1] = {}): Promise<MirrorNode> {
    const n = await node(options)
    await holdImage(n, 'example.com/team/app:v1', image)
    return n
  }
  /** Starts a peer's blob download from `n` and never reads it: one upload held open. */
  async function holdUpload(n: MirrorNode): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const req = request(`${n.url}${path()}`, { headers: { 'x-spegel-mirrored': 'true' } }, (res) => {
        res.pause()
        resolve()
      })
      req.on('error', reject)
      held.push(req)
      req.end()
    })
  }
  const sources = (n: MirrorNode) => {
    const seen: ResponseEvent[] = []
    n.handler.events.on('response', (e) => seen.push(e))
    return seen
  }

  it('answers a peer 429 over its upload cap, and the asker gets the blob from another provider', async () => {
    const busy = await holder({ maxPeerUploads: 1 })
    await holder()
    const asker = await node({ providerOrder: 'lookup' })
    const failures: PeerFailureEvent[] = []
    asker.handler.events.on('peer-failure', (e) => failures.push(e))
    const busyAnswers = sources(busy)
    await holdUpload(busy)
    const res = await get(asker.url, path())
    assert.equal(res.status, 200)
    assert.equal(res.body.byteLength, LAYER_BYTES)
    assert.deepEqual(
      busyAnswers.filter((e) => e.kind === 'blob').map((e) => e.source),
      ['busy']
    )
    assert.deepEqual(
      failures.map((f) => f.kind),
      ['busy']
    )
  })

  it('does not charge a 429 to the retries: with none left the next provider is still asked', async () => {
    const busy = await holder({ maxPeerUploads: 1 })
    await holder()
    const asker = await node({ providerOrder: 'lookup', resolveRetries: 0 })
    await holdUpload(busy)
    const res = await get(asker.url, path())
    assert.equal(res.status, 200)
  })

  it("never refuses the node's own client (containerd): the cap counts peers' requests only", async () => {
    const busy = await holder({ maxPeerUploads: 1 })
    await holdUpload(busy)
    const res = await get(busy.url, path())
    assert.equal(res.status, 200)
  })

  it('waits for a slot when every provider is busy, and gets the blob once one frees', async () => {
    const busy = await holder({ maxPeerUploads: 1 })
    const asker = await node()
    await holdUpload(busy)
    setTimeout(() => {
      for (const h of held.splice(0)) h.destroy()
    }, 600)
    const started = performance.now()
    const res = await get(asker.url, path())
    assert.equal(res.status, 200)
    assert.equal(res.body.byteLength, LAYER_BYTES)
    assert.ok(performance.now() - started >= 500)
  })

  it('answers 404 once busyWaitMs passed with every provider still busy', async () => {
    const busy = await holder({ maxPeerUploads: 1 })
    const asker = await node({ busyWaitMs: 300 })
    await holdUpload(busy)
    const res = await get(asker.url, path())
    assert.equal(res.status, 404)
    assert.equal(busy.handler.peerUploads(), 1)
  })

  it('remembers the most uploads at once after they ended (peakPeerUploads)', async () => {
    const busy = await holder({ maxPeerUploads: 4 })
    await holdUpload(busy)
    await holdUpload(busy)
    assert.deepEqual([busy.handler.peerUploads(), busy.handler.peakPeerUploads()], [2, 2])
    for (const h of held.splice(0)) h.destroy()
    await waitFor(() => busy.handler.peerUploads() === 0, 2000, 'the uploads to end')
    assert.equal(busy.handler.peakPeerUploads(), 2)
  })

  it('picks the provider that answered fastest when the random factors are equal', () => {
    const rtt = new PeerRtt()
    rtt.observe('near', 1)
    rtt.observe('far', 20)
    const choose = spreadOrder(rtt, () => 0.5)
    assert.equal(choose([provider('far'), provider('near')]), 1)
  })

  it('spreads many askers over equal providers instead of all picking the first', async () => {
    const candidates = ['a', 'b', 'c', 'd'].map(provider)
    const firsts = new Set<string>()
    const router = {
      lookup: async function* () {
        yield* candidates
      }
    } as never
    for (let i = 0; i < 40; i++) {
      const queue = new ProviderQueue(
        router,
        'key',
        4,
        new AbortController().signal,
        new PeerAvoidList(),
        spreadOrder(new PeerRtt())
      )
      firsts.add((await queue.take(100))?.id as string)
    }
    assert.ok(firsts.size >= 3, `first choices: ${[...firsts].join(', ')}`)
  })
})

function provider(id: string): Provider {
  return { id, addresses: [], registryUrl: `http://${id}.invalid`, connected: true }
}
