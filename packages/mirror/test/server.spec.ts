import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { createMemoryNetwork } from '@kadmirror/routing'
import { createMemoryStore } from '@kadmirror/store'
import { createMirrorServer, listenMirror, type MirrorServer } from '../src/index.ts'
import { errorCode, get } from './fixtures.ts'

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
