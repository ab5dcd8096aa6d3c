import assert from 'node:assert/strict'
import http from 'node:http'
import type { Readable } from 'node:stream'
import {
  type BuiltImage,
  type ByteRange,
  buildImage,
  type Digest,
  digestOf,
  OCI_MANIFEST,
  tagKey
} from '@kadmirror/oci'
import { createMemoryNetwork, type MemoryNetwork } from '@kadmirror/routing'
import { createMemoryStore } from '@kadmirror/store'
import { collectGarbage } from '@kadmirror/test-support'
import { MIRRORED_HEADER, VERIFYING_HEADER } from '../src/constants.ts'
import {
  createMirrorHandler,
  type DigestMismatchEvent,
  type PeerFailureEvent,
  type ResponseEvent
} from '../src/index.ts'
import {
  errorCode,
  type FakePeer,
  get,
  holdImage,
  type MirrorNode,
  randomBytes,
  serveBytes,
  startFakePeer,
  startMemoryNode,
  stopServer,
  urlOf,
  waitFor
} from './fixtures.ts'

const LAYER_SIZE = 4 * 1024 * 1024

function layerOf(image: BuiltImage): { digest: Digest; bytes: Uint8Array } {
  const manifest = JSON.parse(Buffer.from(image.blobs.get(image.root.digest) as Uint8Array).toString()) as {
    layers: { digest: Digest }[]
  }
  const digest = manifest.layers[0]?.digest as Digest
  return { digest, bytes: image.blobs.get(digest) as Uint8Array }
}

function blobPath(digest: string, ns = 'example.com'): string {
  return `/v2/team/app/blobs/${digest}?ns=${ns}`
}

describe('mirror handler', function () {
  this.timeout(30_000)
  let network: MemoryNetwork
  let nodes: MirrorNode[]
  let fakes: FakePeer[]
  let image: BuiltImage
  let layer: { digest: Digest; bytes: Uint8Array }

  before(() => {
    image = buildImage({ layers: [randomBytes(LAYER_SIZE, 7), Buffer.from('small layer')] })
    layer = layerOf(image)
  })

  beforeEach(() => {
    network = createMemoryNetwork()
    nodes = []
    fakes = []
  })

  afterEach(async () => {
    await Promise.all([...nodes, ...fakes].map((n) => n.close()))
  })

  async function node(options: Parameters<typeof startMemoryNode>[1] = {}): Promise<MirrorNode> {
    const started = await startMemoryNode(network, options)
    nodes.push(started)
    return started
  }

  async function fake(
    keys: readonly string[],
    behaviour: Parameters<typeof startFakePeer>[2],
    host?: string
  ): Promise<FakePeer> {
    const started = await startFakePeer(network, keys, behaviour, host)
    fakes.push(started)
    return started
  }

  /** A node holding the test image as example.com/team/app:v1, advertising every key. */
  async function holder(options: Parameters<typeof startMemoryNode>[1] = {}): Promise<MirrorNode> {
    const n = await node(options)
    await holdImage(n, 'example.com/team/app:v1', image)
    return n
  }

  function events(n: MirrorNode): ResponseEvent[] {
    const seen: ResponseEvent[] = []
    n.handler.events.on('response', (e) => seen.push(e))
    return seen
  }

  describe('the API root and health', () => {
    it('answers GET /v2/ with 200 and the registry API version header', async () => {
      const a = await node()
      const res = await get(a.url, '/v2/')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
    })

    it('answers /livez with 200 and /readyz with 503 until the router knows a peer', async () => {
      const a = await node()
      assert.equal((await get(a.url, '/livez')).status, 200)
      assert.equal((await get(a.url, '/readyz')).status, 503)
      await node()
      assert.equal((await get(a.url, '/readyz')).status, 200)
    })
  })

  describe('content in the local store', () => {
    it('serves a manifest by digest with its media type, digest, length and ETag', async () => {
      const a = await holder()
      const res = await get(a.url, `/v2/team/app/manifests/${image.root.digest}?ns=example.com`)
      assert.equal(res.status, 200)
      assert.equal(res.headers['content-type'], OCI_MANIFEST)
      assert.equal(res.headers['docker-content-digest'], image.root.digest)
      assert.equal(res.headers.etag, `"${image.root.digest}"`)
      assert.equal(Number(res.headers['content-length']), image.root.size)
      assert.equal(digestOf(res.body), image.root.digest)
    })

    it('resolves a tag with ns from the local store', async () => {
      const a = await holder()
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], image.root.digest)
    })

    it('resolves a tag without ns as a Docker Hub tag', async () => {
      const a = await node()
      await a.store.addImage('docker.io/library/nginx:1.27', image)
      const res = await get(a.url, '/v2/library/nginx/manifests/1.27')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], image.root.digest)
    })

    it('answers 404 to a tag without ns when no default registry is set', async () => {
      const a = await node({ defaultTagRegistry: null })
      await a.store.addImage('docker.io/library/nginx:1.27', image)
      const res = await get(a.url, '/v2/library/nginx/manifests/1.27')
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'MANIFEST_UNKNOWN')
    })

    it('answers 404 to tags when tag resolution is off, and still serves digests', async () => {
      const a = await holder({ resolveTags: false })
      assert.equal((await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')).status, 404)
      assert.equal(
        (await get(a.url, `/v2/team/app/manifests/${image.root.digest}?ns=example.com`)).status,
        200
      )
    })

    it('serves a blob whole with Accept-Ranges', async () => {
      const a = await holder()
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.equal(res.headers['accept-ranges'], 'bytes')
      assert.equal(res.headers['content-type'], 'application/octet-stream')
      assert.ok(res.body.equals(layer.bytes))
    })

    it('answers HEAD of a blob with its headers and no body', async () => {
      const a = await holder()
      const res = await get(a.url, blobPath(layer.digest), {}, 'HEAD')
      assert.equal(res.status, 200)
      assert.equal(Number(res.headers['content-length']), LAYER_SIZE)
      assert.equal(res.body.byteLength, 0)
    })

    it('serves a byte range with 206 and Content-Range', async () => {
      const a = await holder()
      const res = await get(a.url, blobPath(layer.digest), { range: 'bytes=1000-1999' })
      assert.equal(res.status, 206)
      assert.equal(res.headers['content-range'], `bytes 1000-1999/${LAYER_SIZE}`)
      assert.ok(res.body.equals(layer.bytes.subarray(1000, 2000)))
    })

    it('answers 416 with Content-Range bytes */size to a range outside the blob', async () => {
      const a = await holder()
      const res = await get(a.url, blobPath(layer.digest), { range: `bytes=${LAYER_SIZE}-` })
      assert.equal(res.status, 416)
      assert.equal(res.headers['content-range'], `bytes */${LAYER_SIZE}`)
      assert.equal(errorCode(res), 'RANGE_INVALID')
    })

    it('answers 304 when If-None-Match names the digest', async () => {
      const a = await holder()
      const res = await get(a.url, blobPath(layer.digest), { 'if-none-match': `"${layer.digest}"` })
      assert.equal(res.status, 304)
    })
  })

  describe('content held by peers', () => {
    it('streams a blob from the peer that holds it, byte for byte', async () => {
      await holder()
      const a = await node()
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], layer.digest)
      assert.ok(res.body.equals(layer.bytes))
    })

    it('resolves a tag through the DHT and serves the manifest from a peer', async () => {
      await holder()
      const a = await node()
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], image.root.digest)
      assert.equal(res.headers['content-type'], OCI_MANIFEST)
      assert.equal(digestOf(res.body), image.root.digest)
    })

    it('answers HEAD of a manifest from a peer with its digest and no body', async () => {
      await holder()
      const a = await node()
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com', {}, 'HEAD')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], image.root.digest)
      assert.equal(Number(res.headers['content-length']), image.root.size)
      assert.equal(res.body.byteLength, 0)
    })

    it('serves a range of a blob from a peer', async () => {
      await holder()
      const a = await node()
      const res = await get(a.url, blobPath(layer.digest), { range: `bytes=${LAYER_SIZE - 100}-` })
      assert.equal(res.status, 206)
      assert.equal(res.headers['content-range'], `bytes ${LAYER_SIZE - 100}-${LAYER_SIZE - 1}/${LAYER_SIZE}`)
      assert.ok(res.body.equals(layer.bytes.subarray(LAYER_SIZE - 100)))
    })

    it('forwards requests with X-Spegel-Mirrored and ns, so peers answer from their own store', async () => {
      const peer = await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node()
      await get(a.url, blobPath(layer.digest, '127.0.0.1:5050'))
      assert.equal(peer.requests[0]?.headers['x-spegel-mirrored'], 'true')
      assert.equal(peer.requests[0]?.url, `/v2/team/app/blobs/${layer.digest}?ns=127.0.0.1%3A5050`)
    })

    it('answers a request marked X-Spegel-Mirrored from its own store only', async () => {
      await holder()
      const a = await node()
      const res = await get(a.url, blobPath(layer.digest), { 'x-spegel-mirrored': 'true' })
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'BLOB_UNKNOWN')
    })

    it('answers 404 BLOB_UNKNOWN when no peer has the blob', async () => {
      await node()
      const a = await node()
      const res = await get(a.url, blobPath(digestOf('nobody has this')))
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'BLOB_UNKNOWN')
    })

    it('answers 404 MANIFEST_UNKNOWN when no peer has the tag', async () => {
      const a = await node()
      const res = await get(a.url, '/v2/team/app/manifests/missing?ns=example.com')
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'MANIFEST_UNKNOWN')
    })
  })

  describe('clients that stop reading', () => {
    /** Bytes of array buffers still referenced (garbage collected first). */
    function liveArrayBuffers(): number {
      collectGarbage()
      return process.memoryUsage().arrayBuffers
    }

    it('holds copy and hash buffers within their budgets however many clients stop reading', async () => {
      const big = randomBytes(16 * 1024 * 1024, 5)
      const digest = digestOf(big)
      const a = await node()
      await a.store.addImage('example.com/team/big:1', buildImage({ layers: [big] }))
      const before = liveArrayBuffers()
      const stuck: http.ClientRequest[] = []
      const started = await Promise.all(
        Array.from(
          { length: 100 },
          () =>
            new Promise<http.IncomingMessage>((resolve, reject) => {
              const req = http.get(`${a.url}${blobPath(digest)}`, (res) => {
                res.pause() // and never read
                resolve(res)
              })
              req.on('error', reject)
              stuck.push(req)
            })
        )
      )
      assert.ok(started.every((res) => res.statusCode === 200))
      await new Promise((resolve) => setTimeout(resolve, 1000))
      const grown = (liveArrayBuffers() - before) / 2 ** 20
      for (const req of stuck) req.destroy()
      // Copy buffers 64 MiB at most, the rest streams with small buffers (measured 97 MiB; 433 MiB before: 4 MiB
      // of copy buffers per client, unbounded).
      assert.ok(grown < 128, `array buffers grew by ${grown.toFixed(0)} MiB`)
    })
  })

  describe('damaged local content', () => {
    /** A node holding a fresh copy of the image whose blob `digest` then has one byte flipped in the store. */
    async function damagedHolder(pick: (fresh: BuiltImage) => Digest): Promise<MirrorNode> {
      const fresh = buildImage({ layers: [randomBytes(LAYER_SIZE, 7), Buffer.from('small layer')] })
      const n = await node()
      await n.store.addImage('example.com/team/app:v1', fresh)
      const bytes = fresh.blobs.get(pick(fresh)) as Uint8Array
      const at = Math.min(100, bytes.byteLength - 1)
      bytes[at] = (bytes[at] as number) ^ 0xff
      return n
    }

    it('does not serve a large local blob that no longer matches its digest, and gets it from a peer', async () => {
      const a = await damagedHolder(() => layer.digest)
      await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const mismatches: DigestMismatchEvent[] = []
      a.handler.events.on('digest-mismatch', (e) => mismatches.push(e))
      const seen = events(a)
      const first = await get(a.url, blobPath(layer.digest))
      assert.ok(first.error !== undefined, 'the damaged body is cut before its last chunk')
      assert.equal(mismatches[0]?.local, true)
      const second = await get(a.url, blobPath(layer.digest))
      assert.equal(second.error, undefined)
      assert.ok(second.body.equals(layer.bytes))
      assert.deepEqual(
        seen.map((e) => e.source),
        ['failed', 'peer']
      )
    })

    it('leaves the hashing of a whole local blob to a kadmirror peer that says it verifies, and hashes it for others', async () => {
      const a = await damagedHolder(() => layer.digest)
      const mirrored = { [MIRRORED_HEADER]: 'true' }
      const verifying = await get(a.url, blobPath(layer.digest), {
        ...mirrored,
        [VERIFYING_HEADER]: 'sha256'
      })
      assert.equal(verifying.error, undefined)
      assert.equal(verifying.body.byteLength, layer.bytes.byteLength)
      assert.notDeepEqual(
        verifying.body,
        layer.bytes,
        'the peer receives the damaged bytes and rejects them itself'
      )
      const other = await get(a.url, blobPath(layer.digest), mirrored)
      assert.ok(other.error !== undefined, 'a mirrored request that does not verify has the damaged body cut')
    })

    it('never sends a small local blob that no longer matches its digest', async () => {
      const small = digestOf(Buffer.from('small layer'))
      const a = await damagedHolder(() => small)
      const res = await get(a.url, blobPath(small))
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'BLOB_UNKNOWN')
    })

    it('does not count a local read cut by a store failure as a hit', async () => {
      const a = await holder()
      const open = a.store.open?.bind(a.store)
      a.store.open = async (digest) => {
        const reader = await open?.(digest)
        if (reader === undefined) return undefined
        return {
          size: reader.size,
          read: async (target, offset, length, position) => {
            if (position > 0) throw Object.assign(new Error('disk gone'), { code: 'EIO' })
            return reader.read(target, offset, length, position)
          },
          close: () => reader.close()
        }
      }
      const seen = events(a)
      const res = await get(a.url, blobPath(layer.digest))
      assert.ok(res.error !== undefined)
      await waitFor(() => seen.length === 1)
      assert.equal(seen[0]?.source, 'failed')
    })
  })

  describe('misbehaving peers', () => {
    const quick = { responseTimeoutMs: 500, stallTimeoutMs: 300, manifestTimeoutMs: 800, minHedgeDelayMs: 50 }

    it('asks a second peer when the first accepts the request and never answers', async () => {
      const hung = await fake([layer.digest], () => {})
      await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node(quick)
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.ok(res.body.equals(layer.bytes))
      assert.equal(hung.requests.length, 1)
    })

    it('answers 404 within the manifest cap when the only peer never answers', async () => {
      await fake([tagKey({ registry: 'example.com', repository: 'team/app', tag: 'v1' }) as string], () => {})
      const a = await node(quick)
      const started = Date.now()
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')
      assert.equal(res.status, 404)
      assert.ok(
        Date.now() - started < quick.manifestTimeoutMs + 1000,
        'the answer is bounded by the manifest cap'
      )
    })

    it('counts a peer that did not answer a manifest within the cap as failed, so the next request does not wait on it', async () => {
      const hung = await fake(
        [tagKey({ registry: 'example.com', repository: 'team/app', tag: 'v1' }) as string],
        () => {}
      )
      const a = await node(quick)
      const failures: PeerFailureEvent[] = []
      a.handler.events.on('peer-failure', (e) => failures.push(e))
      assert.equal((await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')).status, 404)
      assert.equal((await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')).status, 404)
      assert.equal(hung.requests.length, 1)
      assert.deepEqual(
        failures.map((f) => f.kind),
        ['timeout']
      )
    })

    it('answers 404 within the response timeout when the only peer never answers a blob request', async () => {
      await fake([layer.digest], () => {})
      const a = await node(quick)
      const started = Date.now()
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'BLOB_UNKNOWN')
      assert.ok(
        Date.now() - started < quick.responseTimeoutMs + 1000,
        'the answer is bounded by the response timeout'
      )
    })

    it('moves to the next peer when the connection is refused', async () => {
      const dead = await fake([layer.digest], () => {})
      await dead.server.close()
      dead.server.closeAllConnections()
      await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node(quick)
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.ok(res.body.equals(layer.bytes))
    })

    it('moves to the next peer when one answers 500', async () => {
      await fake([layer.digest], (_req, res) => {
        res.writeHead(500)
        res.end()
      })
      await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node(quick)
      const failures: PeerFailureEvent[] = []
      a.handler.events.on('peer-failure', (e) => failures.push(e))
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.ok(res.body.equals(layer.bytes))
      assert.match(failures[0]?.reason ?? '', /500/)
    })

    it('keeps asking a peer that answered 404 for other content: a stale record is not a failure', async () => {
      const other = randomBytes(1000, 5)
      const otherDigest = digestOf(other)
      const peer = await fake([layer.digest, otherDigest], (req, res) => {
        if (req.url?.includes(layer.digest)) {
          res.writeHead(404)
          res.end()
        } else serveBytes(other, otherDigest)(req, res)
      })
      const a = await node(quick)
      assert.equal((await get(a.url, blobPath(layer.digest))).status, 404)
      const res = await get(a.url, blobPath(otherDigest))
      assert.equal(res.status, 200)
      assert.equal(peer.requests.length, 2)
    })

    it('resumes from the byte reached when a peer stops sending mid-blob', async () => {
      const staller = await fake([layer.digest], (_req, res) => {
        res.writeHead(200, { 'content-length': LAYER_SIZE, 'docker-content-digest': layer.digest })
        res.write(Buffer.from(layer.bytes.subarray(0, 1024 * 1024)))
      })
      const good = await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node(quick)
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.error, undefined)
      assert.ok(res.body.equals(layer.bytes))
      assert.equal(staller.requests.length, 1)
      assert.match(good.requests[0]?.headers.range ?? '', /^bytes=[1-9][0-9]*-$/)
    })

    it('delivers every byte, correct, when a peer dies in the middle of a blob', async () => {
      await fake([layer.digest], (_req, res) => {
        res.writeHead(200, { 'content-length': LAYER_SIZE, 'docker-content-digest': layer.digest })
        res.write(Buffer.from(layer.bytes.subarray(0, 2 * 1024 * 1024)), () => res.socket?.destroy())
      })
      await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node(quick)
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.error, undefined)
      assert.equal(res.status, 200)
      assert.ok(res.body.equals(layer.bytes))
    })

    for (const verifyBeforeForwarding of [true, false])
      it(`serves an empty blob from a peer (${verifyBeforeForwarding ? 'verified first' : 'forwarded'})`, async () => {
        const empty = new Uint8Array()
        await fake([digestOf(empty)], serveBytes(empty, digestOf(empty)))
        const a = await node({ ...quick, verifyBeforeForwarding })
        const res = await get(a.url, blobPath(digestOf(empty)))
        assert.equal(res.error, undefined)
        assert.equal(res.status, 200)
        assert.equal(res.body.byteLength, 0)
      })

    it('answers 404, sending no byte, when a peer sends corrupt bytes, so the client pulls upstream', async () => {
      const corrupt = Buffer.from(layer.bytes)
      corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] as number) ^ 0xff
      await fake([layer.digest], serveBytes(corrupt, layer.digest))
      const a = await node(quick)
      const mismatches: DigestMismatchEvent[] = []
      a.handler.events.on('digest-mismatch', (e) => mismatches.push(e))
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'BLOB_UNKNOWN')
      assert.equal(mismatches.length, 1)
      assert.equal(mismatches[0]?.expected, layer.digest)
    })

    it('forwarding as bytes arrive, cuts the response and never delivers a complete corrupt body', async () => {
      const corrupt = Buffer.from(layer.bytes)
      corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] as number) ^ 0xff
      await fake([layer.digest], serveBytes(corrupt, layer.digest))
      const a = await node({ ...quick, verifyBeforeForwarding: false })
      const res = await get(a.url, blobPath(layer.digest))
      assert.ok(res.error !== undefined, 'the body is cut')
      assert.ok(res.body.byteLength < LAYER_SIZE)
    })

    it('avoids a peer that sent corrupt bytes on later requests', async () => {
      const corrupt = Buffer.from(layer.bytes).fill(0)
      const bad = await fake([layer.digest], serveBytes(corrupt, layer.digest))
      const a = await node(quick)
      await get(a.url, blobPath(layer.digest))
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 404)
      assert.equal(bad.requests.length, 1)
    })

    it('serves a manifest from a good peer when the first sends corrupt bytes', async () => {
      const manifest = image.blobs.get(image.root.digest) as Uint8Array
      const wrong = Buffer.from(manifest)
      wrong[10] = 0x20
      await fake([image.root.digest], serveBytes(wrong, image.root.digest, OCI_MANIFEST))
      await fake([image.root.digest], serveBytes(manifest, image.root.digest, OCI_MANIFEST))
      const a = await node(quick)
      const res = await get(a.url, `/v2/team/app/manifests/${image.root.digest}?ns=example.com`)
      assert.equal(res.status, 200)
      assert.ok(res.body.equals(Buffer.from(manifest)))
    })

    it('refuses a tag answer whose body does not hash to the digest the peer names', async () => {
      const key = tagKey({ registry: 'example.com', repository: 'team/app', tag: 'v1' }) as string
      const manifest = image.blobs.get(image.root.digest) as Uint8Array
      await fake(
        [key],
        serveBytes(Buffer.from(`${Buffer.from(manifest).toString()} `), image.root.digest, OCI_MANIFEST)
      )
      const a = await node(quick)
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')
      assert.equal(res.status, 404)
    })

    it('keeps a good peer while the client reads slowly', async () => {
      // Larger than the socket buffers between peer, mirror and client, so the pause reaches the peer.
      const big = randomBytes(48 * 1024 * 1024, 3)
      const digest = digestOf(big)
      await fake([digest], serveBytes(big, digest))
      const a = await node(quick)
      const failures: PeerFailureEvent[] = []
      a.handler.events.on('peer-failure', (e) => failures.push(e))
      const response = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
        http.get(`${a.url}${blobPath(digest)}`, resolve).on('error', reject)
      })
      const chunks: Buffer[] = []
      let paused = false
      for await (const chunk of response as AsyncIterable<Buffer>) {
        chunks.push(chunk)
        if (!paused && Buffer.concat(chunks).byteLength > 256 * 1024) {
          paused = true
          await new Promise((resolve) => setTimeout(resolve, 4 * quick.stallTimeoutMs))
        }
      }
      assert.ok(Buffer.concat(chunks).equals(big))
      assert.deepEqual(failures, [])
    })

    it('does not let fast refusals of stale records use up the attempts a live provider needs', async () => {
      for (let i = 0; i < 4; i++) {
        const stale = await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
        await stopServer(stale.server) // its record stays, as a stopped node's does
      }
      await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node(quick)
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.ok(res.body.equals(layer.bytes))
    })

    it('asks a provider the router is connected to before one it only has a record of', async () => {
      const stale = await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const live = await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node(quick)
      const lookup = a.router.lookup.bind(a.router)
      a.router.lookup = (key, options) =>
        (async function* () {
          for await (const provider of lookup(key, options))
            yield { ...provider, connected: provider.registryUrl !== urlOf(stale.server) }
        })()
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.equal(stale.requests.length, 0)
      assert.equal(live.requests.length, 1)
    })

    /** A peer that sends the first MiB of the layer, then one byte every 100 ms (under the stall timeout). */
    function trickle(
      req: import('node:http').IncomingMessage,
      res: import('node:http').ServerResponse
    ): void {
      res.writeHead(200, { 'content-length': LAYER_SIZE, 'docker-content-digest': layer.digest })
      let position = 1024 * 1024
      res.write(Buffer.from(layer.bytes.subarray(0, position)))
      const timer = setInterval(() => res.write(Buffer.from(layer.bytes.subarray(position, ++position))), 100)
      req.socket.once('close', () => clearInterval(timer))
    }

    it('leaves a trickling peer for the next one and resumes where it stopped', async () => {
      await fake([layer.digest], trickle)
      const good = await fake([layer.digest], serveBytes(layer.bytes, layer.digest))
      const a = await node({ ...quick, progressWindowMs: 1000 })
      const failures: PeerFailureEvent[] = []
      a.handler.events.on('peer-failure', (e) => failures.push(e))
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.error, undefined)
      assert.ok(res.body.equals(layer.bytes))
      assert.deepEqual(
        failures.map((f) => f.kind),
        ['slow']
      )
      assert.match(good.requests[0]?.headers.range ?? '', /^bytes=10[0-9]{5}-$/)
    })

    it('answers 404 when the only peer trickles, within about two progress windows', async () => {
      await fake([layer.digest], trickle)
      const a = await node({ ...quick, progressWindowMs: 1000 })
      const started = Date.now()
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 404)
      assert.ok(Date.now() - started < 10_000)
    })

    it('forwarding as bytes arrive, cuts the response when the only peer trickles', async () => {
      await fake([layer.digest], trickle)
      const a = await node({ ...quick, progressWindowMs: 1000, verifyBeforeForwarding: false })
      const res = await get(a.url, blobPath(layer.digest))
      assert.ok(res.error !== undefined, 'the body is cut')
    })

    /** A peer that sends the first MiB of the layer, then drops the connection. */
    function dropsMidBlob(
      _req: import('node:http').IncomingMessage,
      res: import('node:http').ServerResponse
    ) {
      res.writeHead(200, { 'content-length': LAYER_SIZE, 'docker-content-digest': layer.digest })
      res.write(Buffer.from(layer.bytes.subarray(0, 1024 * 1024)), () => res.socket?.destroy())
    }

    it('answers 404 when the only peer fails mid-blob and no other can resume', async () => {
      await fake([layer.digest], dropsMidBlob)
      const a = await node(quick)
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'BLOB_UNKNOWN')
    })

    it('forwarding as bytes arrive, cuts the response when the only peer fails mid-blob', async () => {
      await fake([layer.digest], dropsMidBlob)
      const a = await node({ ...quick, verifyBeforeForwarding: false })
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 200)
      assert.ok(res.error !== undefined)
    })
  })

  describe('bad input', () => {
    it('answers PUT with 405, Allow and an OCI error: the mirror is read-only', async () => {
      const a = await node()
      const res = await get(a.url, blobPath(layer.digest), {}, 'PUT')
      assert.equal(res.status, 405)
      assert.equal(res.headers.allow, 'GET, HEAD')
      assert.equal(errorCode(res), 'UNSUPPORTED')
    })

    for (const method of ['POST', 'DELETE', 'PATCH'] as const) {
      it(`answers ${method} with 405`, async () => {
        const a = await node()
        assert.equal((await get(a.url, '/v2/team/app/manifests/v1', {}, method)).status, 405)
      })
    }

    for (const path of [
      '/v2/../../etc/passwd/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000',
      '/v2/team/%2e%2e/%2e%2e/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000',
      '/v2/team%2fapp/manifests/latest',
      '/v2/Team/App/manifests/latest'
    ]) {
      it(`answers 400 NAME_INVALID to ${path}`, async () => {
        const a = await holder()
        const res = await get(a.url, path)
        assert.equal(res.status, 400)
        assert.equal(errorCode(res), 'NAME_INVALID')
      })
    }

    it('answers 400 NAME_INVALID, not 500, to a repository too long with the default registry (over 255 characters)', async () => {
      const a = await holder()
      const res = await get(a.url, `/v2/${'a'.repeat(250)}/manifests/latest`)
      assert.equal(res.status, 400)
      assert.equal(errorCode(res), 'NAME_INVALID')
    })

    for (const tag of ['-bad', 'not!valid', 't'.repeat(200)]) {
      it(`answers 404 MANIFEST_UNKNOWN to a tag that cannot exist (${tag.slice(0, 12)}), as the reference registry`, async () => {
        const a = await holder()
        const res = await get(a.url, `/v2/team/app/manifests/${tag}?ns=registry.example.com`)
        assert.equal(res.status, 404)
        assert.equal(errorCode(res), 'MANIFEST_UNKNOWN')
      })
    }

    it('answers 400 DIGEST_INVALID to a malformed digest', async () => {
      const a = await node()
      const res = await get(a.url, '/v2/team/app/blobs/sha256:xyz')
      assert.equal(res.status, 400)
      assert.equal(errorCode(res), 'DIGEST_INVALID')
    })

    it('answers 416 RANGE_INVALID to several ranges', async () => {
      const a = await holder()
      const res = await get(a.url, blobPath(layer.digest), { range: 'bytes=0-1,5-9' })
      assert.equal(res.status, 416)
      assert.equal(errorCode(res), 'RANGE_INVALID')
    })

    it('answers 416 RANGE_INVALID to an absurd range', async () => {
      const a = await holder()
      const res = await get(a.url, blobPath(layer.digest), { range: 'bytes=99999999999999999999-' })
      assert.equal(res.status, 416)
    })

    it('answers 404 to an endpoint the mirror does not serve', async () => {
      const a = await node()
      const res = await get(a.url, '/v2/team/app/tags/list')
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'UNSUPPORTED')
    })

    it('answers 404 to a path outside /v2/ when used without next', async () => {
      const a = await node()
      assert.equal((await get(a.url, '/etc/passwd')).status, 404)
    })
  })

  describe('tag quorum', () => {
    const key = tagKey({ registry: 'example.com', repository: 'team/app', tag: 'v1' }) as string
    const manifest = () => image.blobs.get(image.root.digest) as Uint8Array
    const rogueImage = () => buildImage({ layers: [Buffer.from('an outsider’s image')] })

    it('does not answer a tag that only one peer host names, however many peer ids it has', async () => {
      const rogue = rogueImage()
      const rogueManifest = rogue.blobs.get(rogue.root.digest) as Uint8Array
      await fake([key], serveBytes(rogueManifest, rogue.root.digest, OCI_MANIFEST), '127.0.0.2')
      await fake([key], serveBytes(rogueManifest, rogue.root.digest, OCI_MANIFEST), '127.0.0.2')
      const a = await node({ tagQuorum: 2 })
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'MANIFEST_UNKNOWN')
    })

    it('answers a tag once two peer hosts serve the same digest for it', async () => {
      const rogue = rogueImage()
      await fake(
        [key],
        serveBytes(rogue.blobs.get(rogue.root.digest) as Uint8Array, rogue.root.digest, OCI_MANIFEST),
        '127.0.0.4'
      )
      await fake([key], serveBytes(manifest(), image.root.digest, OCI_MANIFEST), '127.0.0.2')
      await fake([key], serveBytes(manifest(), image.root.digest, OCI_MANIFEST), '127.0.0.3')
      const a = await node({ tagQuorum: 2 })
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], image.root.digest)
    })

    it('answers a tag from any single peer with a quorum of one, as Spegel does', async () => {
      await fake([key], serveBytes(manifest(), image.root.digest, OCI_MANIFEST), '127.0.0.2')
      const a = await node()
      assert.equal((await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')).status, 200)
    })
  })

  describe('filters and credentials', () => {
    it('answers 404 to a reference a registry filter matches, even when held locally', async () => {
      const a = await holder({ filters: [/^example\.com\/team\//] })
      const res = await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')
      assert.equal(res.status, 404)
      assert.equal(errorCode(res), 'MANIFEST_UNKNOWN')
    })

    it('serves references no filter matches', async () => {
      const a = await holder({ filters: [/^private\.example\.com\//] })
      assert.equal((await get(a.url, '/v2/team/app/manifests/v1?ns=example.com')).status, 200)
    })

    it('answers 404 to a registry outside the mirrored registries', async () => {
      const a = await holder({ registries: ['docker.io'] })
      assert.equal((await get(a.url, blobPath(layer.digest, 'example.com'))).status, 404)
    })

    it('serves no content of a filtered image by digest, under any repository name, with or without ns', async () => {
      const a = await holder({ filters: [/^example\.com\/team\//] })
      for (const digest of image.blobs.keys()) {
        const kind = digest === image.root.digest ? 'manifests' : 'blobs'
        for (const query of ['?ns=other.example.org', '?ns=docker.io', ''])
          assert.equal(
            (await get(a.url, `/v2/someone/else/${kind}/${digest}${query}`)).status,
            404,
            kind + query
          )
      }
    })

    it('serves no content of an image from a registry outside the mirrored ones, under another registry', async () => {
      const a = await holder({ registries: ['docker.io'] })
      assert.equal((await get(a.url, blobPath(layer.digest, 'docker.io'))).status, 404)
      assert.equal((await get(a.url, `/v2/library/x/blobs/${layer.digest}`)).status, 404)
    })

    it('answers 401 with WWW-Authenticate without the mirror credentials', async () => {
      const a = await holder({ credentials: { username: 'u', password: 'p' } })
      const res = await get(a.url, blobPath(layer.digest))
      assert.equal(res.status, 401)
      assert.equal(res.headers['www-authenticate'], 'Basic realm="kadmirror"')
      assert.equal(errorCode(res), 'UNAUTHORIZED')
    })

    it('serves clients that send the credentials, and sends them to peers', async () => {
      const credentials = { username: 'u', password: 'p' }
      const authorization = `Basic ${Buffer.from('u:p').toString('base64')}`
      await holder({ credentials })
      const a = await node({ credentials })
      const res = await get(a.url, blobPath(layer.digest), { authorization })
      assert.equal(res.status, 200)
      assert.ok(res.body.equals(layer.bytes))
    })
  })

  describe('events', () => {
    it('reports the source, registry and bytes of each answer', async () => {
      await holder()
      const a = await node()
      const seen = events(a)
      await a.store.addImage('example.com/team/other:v1', buildImage({ layers: [Buffer.from('mine')] }))
      await get(a.url, blobPath(layer.digest))
      await get(a.url, blobPath(digestOf('missing')))
      await waitFor(() => seen.length === 2)
      const [peer, miss] = seen as [ResponseEvent, ResponseEvent]
      assert.equal(peer.source, 'peer')
      assert.equal(peer.registry, 'example.com')
      assert.equal(peer.bytes, LAYER_SIZE)
      assert.equal(typeof peer.resolveMs, 'number')
      assert.equal(miss.source, 'miss')
      assert.equal(miss.status, 404)
    })
  })
})

describe('mirror handler serving a store without random access', () => {
  it('closes the store’s stream of a blob whose client went away while it was opened', async () => {
    const inner = createMemoryStore()
    const layer = randomBytes(1024 * 1024, 11)
    await inner.addImage('example.com/team/app:1', buildImage({ layers: [layer] }))
    let clientGone = (): void => {}
    const gone = new Promise<void>((resolve) => {
      clientGone = resolve
    })
    const streams: Readable[] = []
    // A store that only streams (no `open`), and opens the content once the client has hung up.
    const store = new Proxy(inner, {
      get(target, property) {
        if (property === 'open') return undefined
        if (property === 'read')
          return async (digest: Digest, range?: ByteRange) => {
            await gone
            await new Promise((resolve) => setTimeout(resolve, 20))
            const stream = await target.read(digest, range)
            streams.push(stream)
            return stream
          }
        const value = Reflect.get(target, property)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
    const network = createMemoryNetwork()
    const router = network.createRouter({ registryUrl: 'http://127.0.0.1:1' })
    const handler = createMirrorHandler({ store, router })
    const server = http.createServer(handler)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const request = http.get(`${urlOf(server)}/v2/team/app/blobs/${digestOf(layer)}?ns=example.com`)
      request.on('error', () => {})
      request.on('close', clientGone)
      setTimeout(() => request.destroy(), 50)
      await waitFor(() => streams[0]?.destroyed === true, 2000, 'the store’s stream to be destroyed')
    } finally {
      await stopServer(server)
      await handler.close()
      await router.close()
      await inner.close()
    }
  })
})
