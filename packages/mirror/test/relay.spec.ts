/**
 * Relaying: a node receiving a blob from a peer offers it to other peers while it arrives (a tree, not a star on the
 * first holder); its readers verify what they get, and a relay whose own transfer fails is cut and withdrawn.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { type Digest, digestOf } from '@kadmirror/oci'
import { createMemoryNetwork, type MemoryNetwork } from '@kadmirror/routing'
import { ARRIVING_HEADER } from '../src/constants.ts'
import {
  type ClientResponse,
  type FakePeer,
  get,
  type MirrorNode,
  randomBytes,
  startFakePeer,
  startMemoryNode,
  throttled,
  waitFor
} from './fixtures.ts'

const blob = randomBytes(3 * 1024 * 1024 + 5, 21)
const blobDigest = digestOf(blob)
const path = `/v2/team/app/blobs/${blobDigest}?ns=example.com`

/** A holder with an upload cap of one: its first GET is served slowly with `body`, the others get 429. */
function oneUploadAtATime(body: Buffer, digest: Digest) {
  let busy = false
  return (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' || busy) return void res.writeHead(429).end()
    busy = true
    res.writeHead(200, { 'content-length': body.byteLength, 'docker-content-digest': digest })
    throttled(128 * 1024, 15)(res, body)
  }
}

async function providers(node: MirrorNode, digest: Digest): Promise<string[]> {
  const found: string[] = []
  for await (const p of node.router.lookup(digest, { fresh: true })) found.push(p.registryUrl)
  return found
}

describe('relaying blobs while they arrive', function () {
  this.timeout(20_000)
  let network: MemoryNetwork
  const closers: Array<{ close(): Promise<void> }> = []
  beforeEach(() => {
    network = createMemoryNetwork()
  })
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c.close()
  })

  async function cluster(body: Buffer): Promise<{ holder: FakePeer; relay: MirrorNode; asker: MirrorNode }> {
    const holder = await startFakePeer(network, [blobDigest], oneUploadAtATime(body, blobDigest))
    const relay = await startMemoryNode(network, { relay: true })
    const asker = await startMemoryNode(network, { busyWaitMs: 3000 })
    closers.push(holder, relay, asker)
    return { holder, relay, asker }
  }

  /** The relay's client asks for the blob; resolves that answer's promise once the asker finds the relay's record. */
  async function relaying(relay: MirrorNode, asker: MirrorNode): Promise<{ first: Promise<ClientResponse> }> {
    const first = get(relay.url, path)
    await waitFor(
      async () => (await providers(asker, blobDigest)).includes(relay.url),
      5000,
      'the relay record'
    )
    return { first }
  }

  it('serves a blob it is receiving to another peer before it has all of it, every byte right', async () => {
    const { holder, relay, asker } = await cluster(blob)
    const sources: string[] = []
    relay.handler.events.on('response', (e) => sources.push(e.source))
    const { first } = await relaying(relay, asker)
    const second = await get(asker.url, path)
    assert.equal(second.status, 200)
    assert.ok(second.body.equals(blob))
    assert.ok((await first).body.equals(blob))
    assert.ok(sources.includes('in-flight'), 'the asker was not served from the relay’s spool')
    assert.equal(holder.requests.filter((r) => r.method === 'GET').length, 2) // the relay's, and the 429 to the asker
  })

  it('cuts its readers and withdraws its record when what it received is not the blob', async () => {
    const wrong = Buffer.from(blob)
    wrong.writeUInt8(wrong.readUInt8(blob.byteLength - 1) ^ 1, blob.byteLength - 1)
    const { relay, asker } = await cluster(wrong)
    const { first } = await relaying(relay, asker)
    const second = await get(asker.url, path)
    assert.equal(second.status, 404)
    assert.equal((await first).status, 404)
    await waitFor(
      async () => !(await providers(asker, blobDigest)).includes(relay.url),
      5000,
      'the withdrawal'
    )
  })

  it('sends a peer asking for a range that has not arrived yet to another provider at once, and serves one that has', async () => {
    // The holder sends 64 KiB every 50 ms: the 3 MiB take about 2.5 s to reach the relay.
    const holder = await startFakePeer(network, [blobDigest], (req, res) => {
      res.writeHead(200, { 'content-length': blob.byteLength, 'docker-content-digest': blobDigest })
      if (req.method === 'GET') throttled(64 * 1024, 50)(res, blob)
      else res.end()
    })
    const relay = await startMemoryNode(network, { relay: true })
    closers.push(holder, relay)
    const first = get(relay.url, path)
    const peer = { 'x-spegel-mirrored': 'true' }
    await waitFor(
      async () => (await get(relay.url, path, { ...peer, range: 'bytes=0-99' })).status === 206,
      2000,
      'bytes 0-99'
    )
    const ahead = await get(relay.url, path, { ...peer, range: `bytes=${blob.byteLength - 100}-` })
    assert.equal(ahead.status, 429)
    assert.equal(JSON.parse(ahead.body.toString()).errors[0].code, 'TOOMANYREQUESTS')
    const start = await get(relay.url, path, { ...peer, range: 'bytes=0-99' })
    assert.equal(start.status, 206)
    assert.ok(start.body.equals(blob.subarray(0, 100)))
    assert.ok((await first).body.equals(blob))
  })

  it('fetches a blob its peers are still receiving in one stream, never in pieces', async () => {
    // Two peers still receiving the blob: each sends it whole as it "arrives" and refuses any range with 429, as a
    // relay refuses bytes it has not received yet.
    const arriving = (req: IncomingMessage, res: ServerResponse): void => {
      if (req.method !== 'GET' || req.headers.range !== undefined) return void res.writeHead(429).end()
      const headers = { 'content-length': blob.byteLength, 'docker-content-digest': blobDigest }
      res.writeHead(200, { ...headers, [ARRIVING_HEADER]: 'true' })
      throttled(256 * 1024, 10)(res, blob)
    }
    const peers = [
      await startFakePeer(network, [blobDigest], arriving),
      await startFakePeer(network, [blobDigest], arriving)
    ]
    const asker = await startMemoryNode(network, {
      multiPeerThresholdBytes: 1024 * 1024,
      pieceBytes: 512 * 1024,
      maxPieceProviders: 4
    })
    closers.push(...peers, asker)
    const answer = await get(asker.url, path)
    assert.equal(answer.status, 200)
    assert.ok(answer.body.equals(blob))
    const ranges = peers.flatMap((p) => p.requests).filter((r) => r.headers.range !== undefined)
    assert.deepEqual(ranges, [])
  })

  it('does not relay when relaying is off (the default)', async () => {
    const holder = await startFakePeer(network, [blobDigest], oneUploadAtATime(blob, blobDigest))
    const node = await startMemoryNode(network)
    closers.push(holder, node)
    assert.equal((await get(node.url, path)).status, 200)
    assert.deepEqual(await providers(node, blobDigest), [urlOfPeer(holder)])
  })
})

function urlOfPeer(peer: FakePeer): string {
  const address = peer.server.address()
  return typeof address === 'object' && address !== null ? `http://127.0.0.1:${address.port}` : ''
}
