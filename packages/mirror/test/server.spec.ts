import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { get as httpGet, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { networkInterfaces } from 'node:os'
import { buildImage, type Digest } from '@kadmirror/oci'
import { createMemoryNetwork } from '@kadmirror/routing'
import { createMemoryStore } from '@kadmirror/store'
import { createMirrorServer, listenMirror, type MirrorServer } from '../src/index.ts'
import { errorCode, get, randomBytes, serveRanges, startFakePeer, throttled } from './fixtures.ts'

/** Sends raw bytes and returns everything the server answers before closing. */
async function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(request))
    const chunks: Buffer[] = []
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.on('error', reject)
  })
}

describe('mirror server', () => {
  let mirror: MirrorServer

  beforeEach(async () => {
    const router = createMemoryNetwork().createRouter({ registryUrl: 'http://127.0.0.1:1' })
    mirror = await createMirrorServer({ store: createMemoryStore(), router, port: 0, host: '127.0.0.1' })
  })

  afterEach(async () => {
    await mirror.close()
  })

  it('listens on an ephemeral port and answers /v2/', async () => {
    assert.ok(mirror.port > 0)
    assert.equal((await get(mirror.url, '/v2/')).status, 200)
  })

  it('answers oversized request headers with 431 and an OCI error body', async () => {
    const answer = await raw(
      mirror.port,
      `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`
    )
    assert.match(answer, /^HTTP\/1\.1 431 /)
    assert.match(answer, /"code":"UNSUPPORTED"/)
  })

  it('answers a malformed request line with 400 and an OCI error body', async () => {
    const answer = await raw(mirror.port, 'NOT HTTP AT ALL\r\n\r\n')
    assert.match(answer, /^HTTP\/1\.1 400 /)
    assert.match(answer, /"errors"/)
  })

  it('answers a miss with an OCI error body', async () => {
    const res = await get(mirror.url, `/v2/a/blobs/sha256:${'1'.repeat(64)}`)
    assert.equal(res.status, 404)
    assert.equal(errorCode(res), 'BLOB_UNKNOWN')
  })
})

describe('mirror listener', () => {
  it('answers 503 with an OCI error until a handler is served, then serves it', async () => {
    const listener = await listenMirror({ port: 0, host: '127.0.0.1' })
    try {
      const early = await get(listener.url, '/v2/')
      assert.equal(early.status, 503)
      assert.equal(errorCode(early), 'UNSUPPORTED')
      const router = createMemoryNetwork().createRouter({ registryUrl: listener.url })
      listener.serve({ store: createMemoryStore(), router })
      assert.equal((await get(listener.url, '/v2/')).status, 200)
      assert.throws(() => listener.serve({ store: createMemoryStore(), router }), /already serves/)
    } finally {
      await listener.close()
    }
  })
})

describe('mirror server connection limits', function () {
  this.timeout(30_000)
  let mirror: MirrorServer
  const layer = new Uint8Array(8 * 1024 * 1024).fill(7)

  beforeEach(async () => {
    const store = createMemoryStore()
    await store.addImage('registry.example.com/big:1', buildImage({ layers: [layer] }))
    const router = createMemoryNetwork().createRouter({ registryUrl: 'http://127.0.0.1:1' })
    mirror = await createMirrorServer({
      store,
      router,
      port: 0,
      host: '127.0.0.1',
      headersTimeoutMs: 300,
      maxConnectionsPerClient: 3
    })
  })

  afterEach(async () => {
    await mirror.close()
  })

  /** Opens a connection and resolves when the server closes it, with how long that took in ms (`sendEveryMs`: trickle a head). */
  const closedAfter = (sendEveryMs?: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const started = Date.now()
      const socket = connect(mirror.port, '127.0.0.1')
      // Read, as a client does: a socket that neither reads nor writes never learns that the server closed it.
      socket.resume()
      let timer: NodeJS.Timeout | undefined
      if (sendEveryMs !== undefined) {
        const head = 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: '
        let i = 0
        timer = setInterval(() => socket.write(head[i++ % head.length] as string), sendEveryMs)
      }
      socket.on('close', () => {
        clearInterval(timer)
        resolve(Date.now() - started)
      })
      socket.on('error', () => {})
      setTimeout(() => reject(new Error('the server never closed the connection')), 10_000).unref()
    })

  it('closes a connection that never sends a request once the headers timeout passes', async () => {
    const ms = await closedAfter()
    assert.ok(ms >= 250, `closed after ${ms} ms`)
  })

  it('closes a connection that trickles its request head', async () => {
    const ms = await closedAfter(50)
    assert.ok(ms >= 250, `closed after ${ms} ms`)
  })

  it('still completes a blob transfer that takes longer than the headers timeout', async () => {
    const res = await new Promise<IncomingMessage>((resolve, reject) =>
      httpGet(
        `${mirror.url}/v2/big/blobs/sha256:${createHash('sha256').update(layer).digest('hex')}?ns=registry.example.com`,
        resolve
      ).on('error', reject)
    )
    assert.equal(res.statusCode, 200)
    let bytes = 0
    res.pause()
    await new Promise((resolve) => setTimeout(resolve, 800))
    res.on('data', (chunk: Buffer) => {
      bytes += chunk.byteLength
    })
    res.resume()
    await new Promise((resolve, reject) => res.on('end', resolve).on('error', reject))
    assert.equal(bytes, layer.byteLength)
  })

  it('refuses a client’s connections beyond its cap and keeps the ones it holds', async () => {
    const open = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<ReturnType<typeof connect>>((resolve) => {
            const socket = connect(mirror.port, '127.0.0.1', () => resolve(socket))
            socket.on('error', () => {})
          })
      )
    )
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const extra = await closedAfter()
      assert.ok(extra < 250, `the extra connection lived ${extra} ms`)
      assert.ok(open.every((socket) => !socket.destroyed))
    } finally {
      for (const socket of open) socket.destroy()
    }
  })
})

describe('mirror server allowed networks', () => {
  /** This machine's first non-loopback IPv4 address (connections to it come from it, not from loopback). */
  const ownAddress = Object.values(networkInterfaces())
    .flat()
    .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address

  async function answers(allowedNetworks: string[], from: string): Promise<number | 'closed'> {
    const router = createMemoryNetwork().createRouter({ registryUrl: 'http://127.0.0.1:1' })
    const server = await createMirrorServer({
      store: createMemoryStore(),
      router,
      port: 0,
      host: '0.0.0.0',
      allowedNetworks
    })
    try {
      return await get(`http://${from}:${server.port}`, '/v2/').then(
        (res) => res.status,
        () => 'closed' as const
      )
    } finally {
      await server.close()
    }
  }

  it('closes a connection from outside its allowed networks and serves one from inside', async function () {
    if (ownAddress === undefined) this.skip()
    const address = ownAddress as string
    assert.equal(await answers(['198.51.100.0/24'], address), 'closed')
    assert.equal(await answers([`${address}/32`], address), 200)
  })

  it('always serves loopback clients (containerd on the node)', async () => {
    assert.equal(await answers(['198.51.100.0/24'], '127.0.0.1'), 200)
  })

  it('refuses an allow list entry that is not an IP network', async () => {
    const router = createMemoryNetwork().createRouter({ registryUrl: 'http://127.0.0.1:1' })
    await assert.rejects(
      createMirrorServer({ store: createMemoryStore(), router, port: 0, allowedNetworks: ['10.0.0.0/99'] }),
      { code: 'ERR_INVALID_ACCESS_RULE' }
    )
  })
})

describe('mirror server stall timeout', function () {
  this.timeout(30_000)

  it('closes the connection of a client that stops reading a response for the stall timeout', async () => {
    const layer = new Uint8Array(32 * 1024 * 1024).fill(9)
    const store = createMemoryStore()
    await store.addImage('registry.example.com/big:1', buildImage({ layers: [layer] }))
    const router = createMemoryNetwork().createRouter({ registryUrl: 'http://127.0.0.1:1' })
    const mirror = await createMirrorServer({
      store,
      router,
      port: 0,
      host: '127.0.0.1',
      clientStallTimeoutMs: 500
    })
    try {
      const digest = `sha256:${createHash('sha256').update(layer).digest('hex')}`
      const res = await new Promise<IncomingMessage>((resolve, reject) =>
        httpGet(`${mirror.url}/v2/big/blobs/${digest}?ns=registry.example.com`, resolve).on('error', reject)
      )
      const started = Date.now()
      const closed = new Promise<number>((resolve) =>
        mirror.handler.events.once('response', (e) => resolve(e.bytes))
      )
      res.pause() // and never read again (a paused client does not even notice the close)
      const sent = await closed
      const took = Date.now() - started
      assert.ok(took >= 400 && took < 5000, `closed after ${took} ms`)
      assert.ok(sent < layer.byteLength, `${sent} bytes sent`)
      res.destroy()
    } finally {
      await mirror.close()
    }
  })
  it('keeps the connection of a client waiting while a slow peer’s blob is spooled and verified (longer than the stall timeout)', async () => {
    const network = createMemoryNetwork()
    const bytes = randomBytes(1024 * 1024)
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest
    // 16 chunks 100 ms apart: 1.6 s of spooling, over three stall timeouts with nothing sent to the client.
    const peer = await startFakePeer(network, [digest], serveRanges(bytes, digest, throttled(64 * 1024, 100)))
    const mirror = await createMirrorServer({
      store: createMemoryStore(),
      router: network.createRouter({ registryUrl: 'http://127.0.0.1:1' }),
      port: 0,
      host: '127.0.0.1',
      clientStallTimeoutMs: 500
    })
    try {
      const res = await get(mirror.url, `/v2/slow/blobs/${digest}?ns=registry.example.com`)
      assert.equal(res.status, 200)
      assert.equal(res.error, undefined)
      assert.ok(res.body.equals(bytes))
    } finally {
      await mirror.close()
      await peer.close()
    }
  })
})
