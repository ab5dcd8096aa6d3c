/**
 * Large blobs from several peers at once: real HTTP peers on loopback serving Range requests, the mirror fetching
 * pieces from each, the whole blob verified before the first byte goes out.
 */
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { type Digest, digestOf } from '@kadmirror/oci'
import { createMemoryNetwork, type MemoryNetwork } from '@kadmirror/routing'
import { request } from 'undici'
import {
  errorCode,
  type FakePeer,
  get,
  randomBytes,
  rangeOf,
  serveRanges,
  startFakePeer,
  startMemoryNode,
  throttled
} from './fixtures.ts'

const MIB = 1024 * 1024
const BLOB_BYTES = 8 * MIB
/** Small pieces so that a few MiB make many of them. */
const pieces = { multiPeerThresholdBytes: 2 * MIB, pieceBytes: 512 * 1024, maxPieceProviders: 4 }
const quick = { responseTimeoutMs: 500, stallTimeoutMs: 300, minHedgeDelayMs: 50 }

type MirrorOptions = Parameters<typeof startMemoryNode>[1]

/**
 * A fresh memory network per test (hooks of the calling describe): `peer` starts a fake peer holding `digest`,
 * `mirror` a mirror node with `defaults` (and the test's own options); all stopped after each test.
 */
function pieceCluster(digest: Digest, defaults: MirrorOptions) {
  let network: MemoryNetwork
  let closing: { close(): Promise<void> }[] = []
  beforeEach(() => {
    network = createMemoryNetwork()
    closing = []
  })
  afterEach(async () => {
    await Promise.all(closing.map((c) => c.close()))
  })
  const track = <T extends { close(): Promise<void> }>(started: T): T => {
    closing.push(started)
    return started
  }
  return {
    peer: async (behaviour: Parameters<typeof startFakePeer>[2], held: Digest[] = [digest]) =>
      track(await startFakePeer(network, held, behaviour)),
    mirror: async (options: MirrorOptions = {}) =>
      track(await startMemoryNode(network, { ...defaults, ...options }))
  }
}

describe('a large blob from several peers', function () {
  this.timeout(30_000)
  const blob = randomBytes(BLOB_BYTES, 11)
  const digest = digestOf(blob) as Digest
  const path = `/v2/team/app/blobs/${digest}?ns=example.com`
  const { peer, mirror } = pieceCluster(digest, { ...quick, ...pieces })
  /** Bytes a peer was asked for by Range requests. */
  const requestedBytes = (p: FakePeer) =>
    p.requests.reduce((sum, r) => {
      const range = rangeOf(r.headers.range, BLOB_BYTES)
      return sum + (range === undefined ? 0 : range.end - range.start)
    }, 0)

  it('reassembles pieces from 3 peers byte for byte', async () => {
    const peers = [
      await peer(serveRanges(blob, digest)),
      await peer(serveRanges(blob, digest)),
      await peer(serveRanges(blob, digest))
    ]
    const a = await mirror()
    const res = await get(a.url, path)
    assert.equal(res.status, 200)
    assert.ok(res.body.equals(blob))
    assert.deepEqual(
      peers.map((p) => p.requests.length > 0),
      [true, true, true]
    )
    assert.ok(peers.some((p) => /^bytes=[0-9]+-[0-9]+$/.test(p.requests.at(-1)?.headers.range ?? '')))
  })

  it('fetches a blob under the threshold from one peer, whole', async () => {
    const small = randomBytes(MIB, 3)
    const smallDigest = digestOf(small)
    const peers = []
    for (let i = 0; i < 3; i++) peers.push(await peer(serveRanges(small, smallDigest), [smallDigest]))
    const a = await mirror()
    const res = await get(a.url, `/v2/team/app/blobs/${smallDigest}?ns=example.com`)
    assert.ok(res.body.equals(small))
    assert.equal(
      peers.reduce((n, p) => n + p.requests.length, 0),
      1
    )
  })

  it('gives more pieces to a faster peer', async () => {
    const fast = await peer(serveRanges(blob, digest))
    const slow = await peer(serveRanges(blob, digest, throttled(64 * 1024, 20)))
    const a = await mirror({ minPeerBytesPerSecond: 0 })
    const res = await get(a.url, path)
    assert.ok(res.body.equals(blob))
    assert.ok(
      requestedBytes(fast) > 2 * requestedBytes(slow),
      `fast ${requestedBytes(fast)}, slow ${requestedBytes(slow)}`
    )
  })

  it('serves correct bytes when one peer corrupts its pieces, and names that peer', async () => {
    const liar = await peer(
      serveRanges(blob, digest, (res, body) => {
        res.end(Buffer.from(body).fill(0, 0, 16))
      })
    )
    await peer(serveRanges(blob, digest))
    await peer(serveRanges(blob, digest))
    const a = await mirror()
    const mismatches: string[] = []
    a.handler.events.on('digest-mismatch', (e) => mismatches.push(...e.peers))
    const res = await get(a.url, path)
    // The liar advertised first, so it is asked first and sends pieces; its bytes are found and re-fetched.
    assert.ok(liar.requests.length > 0)
    assert.equal(res.status, 200)
    assert.ok(res.body.equals(blob))
    assert.deepEqual([...new Set(mismatches)], [peerIdOf(liar)])
  })

  it('finishes from the others when a peer stalls in the middle of a piece', async () => {
    await peer(serveRanges(blob, digest, (res, body) => res.write(body.subarray(0, body.byteLength / 2))))
    await peer(serveRanges(blob, digest))
    await peer(serveRanges(blob, digest))
    const a = await mirror()
    const res = await get(a.url, path)
    assert.equal(res.status, 200)
    assert.ok(res.body.equals(blob))
  })

  it('finishes from the others when a peer dies in the middle of a piece', async () => {
    await peer(
      serveRanges(blob, digest, (res, body) =>
        res.write(body.subarray(0, body.byteLength / 2), () => res.socket?.destroy())
      )
    )
    await peer(serveRanges(blob, digest))
    const a = await mirror()
    const res = await get(a.url, path)
    assert.equal(res.status, 200)
    assert.ok(res.body.equals(blob))
  })

  it('answers a client Range that spans pieces with exactly those bytes', () =>
    assertRangeAcrossPieces({ peer, mirror }, blob, digest, path))

  it('takes the whole blob from a peer that ignores Range (answers 200), as Spegel peers may', async () => {
    const whole = (res: ServerResponse, body: Buffer) => res.end(body)
    await peer((req, res) => {
      res.writeHead(200, { 'content-length': BLOB_BYTES, 'docker-content-digest': digest })
      if (req.method === 'HEAD') return void res.end()
      whole(res, blob)
    })
    await peer(serveRanges(blob, digest))
    const a = await mirror()
    const res = await get(a.url, path)
    assert.equal(res.status, 200)
    assert.ok(res.body.equals(blob))
  })
})

describe('a large blob from several peers, forwarded as its pieces land', function () {
  this.timeout(30_000)
  const blob = randomBytes(BLOB_BYTES, 12)
  const digest = digestOf(blob) as Digest
  const path = `/v2/team/app/blobs/${digest}?ns=example.com`
  const { peer, mirror } = pieceCluster(digest, { ...quick, ...pieces, verifyBeforeForwarding: false })

  it('reassembles pieces from 3 peers byte for byte', async () => {
    const peers = [
      await peer(serveRanges(blob, digest)),
      await peer(serveRanges(blob, digest)),
      await peer(serveRanges(blob, digest))
    ]
    const a = await mirror()
    const res = await get(a.url, path)
    assert.equal(res.status, 200)
    assert.ok(res.body.equals(blob))
    // The first peer's answer is the whole blob from byte 0; the others are asked for pieces by Range.
    assert.ok(peers.filter((p) => p.requests.some((r) => r.headers.range !== undefined)).length >= 2)
  })

  it('sends the first bytes while the last piece has not arrived', async () => {
    // Every byte of the last MiB is held by the peers until the client has received its first MiB: a mirror that
    // waited for the whole blob would never send one.
    const heldFrom = BLOB_BYTES - MIB
    let release: () => void = () => {}
    const released = new Promise<void>((resolve) => (release = resolve))
    const gated = (res: ServerResponse, body: Buffer, start: number) => {
      const free = Math.max(0, Math.min(body.byteLength, heldFrom - start))
      res.write(body.subarray(0, free))
      void released.then(() => res.end(body.subarray(free)))
    }
    const peers = [await peer(serveRanges(blob, digest, gated)), await peer(serveRanges(blob, digest, gated))]
    const a = await mirror({ responseTimeoutMs: 5000, stallTimeoutMs: 5000 })
    const { body, before } = await getUntil(a.url, path, MIB, release)
    assert.ok(before >= MIB, `${before} bytes before the last piece`)
    assert.ok(body.equals(blob))
    assert.deepEqual(
      peers.map((p) => p.requests.length > 0),
      [true, true]
    )
  })

  it('answers a client Range that spans pieces with exactly those bytes', () =>
    assertRangeAcrossPieces({ peer, mirror }, blob, digest, path))

  it('cuts the response, never ending it short, when the peers fail after the first bytes went out', async () => {
    // Half of each answer, then the connection dies a second later (the first bytes reach the client meanwhile).
    const dies = (res: ServerResponse, body: Buffer) =>
      res.write(body.subarray(0, body.byteLength / 2), () => setTimeout(() => res.socket?.destroy(), 1000))
    await peer(serveRanges(blob, digest, dies))
    await peer(serveRanges(blob, digest, dies))
    const a = await mirror({ stallTimeoutMs: 3000 })
    const cut = await get(a.url, path)
    assert.equal(cut.status, 200)
    assert.ok(cut.error !== undefined, 'the response ended as if complete')
    assert.ok(cut.body.byteLength > 0 && cut.body.byteLength < BLOB_BYTES)
  })

  it('answers 404 when the peers fail before any byte could go out', async () => {
    // The answer's headers, then the connection dies before any byte of the body.
    const dies = (res: ServerResponse) => {
      res.flushHeaders()
      setTimeout(() => res.socket?.destroy(), 20)
    }
    await peer(serveRanges(blob, digest, dies))
    await peer(serveRanges(blob, digest, dies))
    const a = await mirror()
    const miss = await get(a.url, path)
    assert.equal(miss.status, 404)
    assert.equal(errorCode(miss), 'BLOB_UNKNOWN')
  })

  it('never completes a wrong body, names the peer that corrupted its pieces, and serves the retry right', async () => {
    const liar = await peer(
      serveRanges(blob, digest, (res, body) => {
        res.end(Buffer.from(body).fill(0, 0, 16))
      })
    )
    await peer(serveRanges(blob, digest))
    await peer(serveRanges(blob, digest))
    const a = await mirror()
    const mismatches: string[] = []
    const named = new Promise<void>((resolve) =>
      a.handler.events.on('digest-mismatch', (e) => {
        mismatches.push(...e.peers)
        resolve()
      })
    )
    const cut = await get(a.url, path)
    assert.ok(liar.requests.length > 0)
    assert.ok(cut.error !== undefined || cut.body.byteLength < BLOB_BYTES, 'the wrong body was cut')
    assert.ok(!cut.body.equals(blob))
    await named
    assert.deepEqual([...new Set(mismatches)], [peerIdOf(liar)])
    const retried = await get(a.url, path)
    assert.equal(retried.status, 200)
    assert.ok(retried.body.equals(blob))
  })
})

/**
 * GETs `path`, calls `reached` once `bytes` arrived, and resolves the whole body and how many bytes arrived before
 * `reached` was called. Fails after 10 s without `bytes` (a mirror that holds every byte until the end).
 */
async function getUntil(
  base: string,
  path: string,
  bytes: number,
  reached: () => void
): Promise<{ body: Buffer; before: number }> {
  const response = await request(`${base}${path}`)
  const chunks: Buffer[] = []
  let received = 0
  let before = -1
  const guard = setTimeout(
    () => response.body.destroy(new Error(`fewer than ${bytes} bytes in 10 s`)),
    10_000
  )
  try {
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      chunks.push(chunk)
      received += chunk.byteLength
      if (before < 0 && received >= bytes) {
        before = received
        clearTimeout(guard)
        reached()
      }
    }
  } finally {
    clearTimeout(guard)
    reached()
  }
  return { body: Buffer.concat(chunks), before }
}

/** Two peers hold `blob`; a client Range spanning pieces gets exactly those bytes (either mode). */
async function assertRangeAcrossPieces(
  cluster: Pick<ReturnType<typeof pieceCluster>, 'peer' | 'mirror'>,
  blob: Buffer,
  digest: Digest,
  path: string
): Promise<void> {
  await cluster.peer(serveRanges(blob, digest))
  await cluster.peer(serveRanges(blob, digest))
  const a = await cluster.mirror()
  const start = 3 * 512 * 1024 - 100
  const end = 6 * 512 * 1024 + 100
  const res = await get(a.url, path, { range: `bytes=${start}-${end}` })
  assert.equal(res.status, 206)
  assert.ok(res.body.equals(blob.subarray(start, end + 1)))
}

/** The id a fake peer's (memory) router has: what digest-mismatch events name. */
function peerIdOf(peer: FakePeer): string {
  return (peer.router as unknown as { id: string }).id
}
