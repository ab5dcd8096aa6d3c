import assert from 'node:assert/strict'
import { createHash, randomFillSync } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import fc from 'fast-check'
import {
  type BlobClientOptions,
  type BlobResponse,
  parseResponseHead,
  requestBlob
} from '../src/blob-client.ts'
import { PeerAnswerError } from '../src/errors.ts'

const OPTIONS: BlobClientOptions = {
  connectTimeoutMs: 500,
  headersTimeoutMs: 500,
  stallTimeoutMs: 300,
  maxHeaderBytes: 16 * 1024
}

/** A TCP server that answers every connection with `answer` (it writes what it likes). */
async function rawServer(answer: (socket: Socket) => void): Promise<{ port: number; server: Server }> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.once('data', () => answer(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const close = server.close.bind(server)
  server.close = (cb) => {
    for (const socket of sockets) socket.destroy()
    return close(cb)
  }
  return { port: (server.address() as { port: number }).port, server }
}

function get(port: number, options: Partial<BlobClientOptions> = {}, signal = new AbortController().signal) {
  return requestBlob({ host: '127.0.0.1', port }, 'GET', '/v2/x/blobs/sha256:0', {}, signal, {
    ...OPTIONS,
    ...options
  })
}

/** Reads a body whole, releasing each chunk after `holdMs` (a slow sink): resolves its bytes, or rejects. */
function readAll(response: BlobResponse, holdMs = 0): Promise<Buffer> {
  const hash = createHash('sha256')
  const parts: Buffer[] = []
  return new Promise((resolve, reject) => {
    response.body.read({
      chunk(bytes, release) {
        // Copy now; check later that the bytes did not change while held.
        const copy = Buffer.from(bytes)
        parts.push(copy)
        hash.update(copy)
        setTimeout(() => {
          assert.ok(bytes.equals(copy), 'a held chunk changed before its release')
          release()
        }, holdMs)
      },
      end: () => resolve(Buffer.concat(parts)),
      error: reject
    })
  })
}

describe('blob client', () => {
  const servers: Server[] = []
  afterEach(async () => {
    for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve))
  })
  const serve = async (answer: (socket: Socket) => void): Promise<number> => {
    const { port, server } = await rawServer(answer)
    servers.push(server)
    return port
  }

  it('delivers a large body byte for byte while the reader holds chunks (buffers are reused only once released)', async () => {
    const body = randomFillSync(Buffer.alloc(6 * 1024 * 1024 + 123))
    const port = await serve((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.byteLength}\r\n\r\n`)
      socket.end(body)
    })
    const response = await get(port)
    assert.equal(response.statusCode, 200)
    assert.equal(response.headers['content-length'], String(body.byteLength))
    assert.ok((await readAll(response, 2)).equals(body))
  })

  it('reads a head that arrives in pieces, with the first body bytes in the same packet', async () => {
    const port = await serve((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nConte')
      setTimeout(() => socket.write('nt-Length: 5\r\nX-A: b\r\n\r\nhel'), 20)
      setTimeout(() => socket.end('lo'), 40)
    })
    const response = await get(port)
    assert.equal(response.headers['x-a'], 'b')
    assert.equal((await readAll(response)).toString(), 'hello')
  })

  it('fails a body the peer cuts short', async () => {
    const port = await serve((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'))
    await assert.rejects(readAll(await get(port)), PeerAnswerError)
  })

  it('fails a body longer than its Content-Length', async () => {
    const port = await serve((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabcdef'))
    await assert.rejects(readAll(await get(port)), /more bytes than its Content-Length/)
  })

  it('refuses a chunked or length-less 200, and a head over the limit', async () => {
    const chunked = await serve((socket) =>
      socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n')
    )
    await assert.rejects(get(chunked), /chunked/)
    const lengthless = await serve((socket) => socket.end('HTTP/1.1 200 OK\r\n\r\nabc'))
    await assert.rejects(get(lengthless), /no Content-Length/)
    const huge = await serve((socket) => socket.end(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`))
    await assert.rejects(get(huge), /head too large/)
  })

  it('answers an error status by its head alone, whatever its body framing', async () => {
    const port = await serve((socket) =>
      socket.end('HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\noops\r\n0\r\n\r\n')
    )
    const response = await get(port)
    assert.equal(response.statusCode, 500)
    response.body.discard()
  })

  it('times out a peer that accepts and never answers, and one that stops mid-body', async () => {
    const silent = await serve(() => {})
    await assert.rejects(get(silent), { name: 'TimeoutError' })
    const stalls = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'))
    await assert.rejects(readAll(await get(stalls)), { name: 'TimeoutError' })
  })

  it('does not time out a body while its reader holds it paused', async () => {
    const port = await serve((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab')
      setTimeout(() => socket.end('cd'), 50)
    })
    const response = await get(port)
    // The reader looks at the head for longer than the stall timeout before it reads.
    await new Promise((resolve) => setTimeout(resolve, OPTIONS.stallTimeoutMs * 2))
    assert.equal((await readAll(response)).toString(), 'abcd')
  })

  it('gives a connection error its code (a refused peer)', async () => {
    const port = await serve(() => {})
    await new Promise((resolve) => servers.pop()?.close(resolve))
    await assert.rejects(get(port), { code: 'ECONNREFUSED' })
  })

  it('stops at once when its signal aborts', async () => {
    const port = await serve(() => {})
    const controller = new AbortController()
    const pending = get(port, { headersTimeoutMs: 10_000 }, controller.signal)
    controller.abort(new Error('the client left'))
    await assert.rejects(pending, /the client left/)
  })

  it('parses any well-formed head and throws only PeerAnswerError on anything else', () => {
    const token = fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/)
    const value = fc.stringMatching(/^[\x21-\x7e]{0,40}$/)
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.array(fc.tuple(token, value), { maxLength: 8 }),
        (status, headers) => {
          const head = [`HTTP/1.1 ${status} Reason`, ...headers.map(([n, v]) => `${n}: ${v}`)].join('\r\n')
          const unique = new Map<string, string>()
          for (const [n, v] of headers) if (!unique.has(n.toLowerCase())) unique.set(n.toLowerCase(), v)
          const clash = headers.some(
            ([n, v]) => n.toLowerCase() === 'content-length' && unique.get('content-length') !== v
          )
          if (clash) return assert.throws(() => parseResponseHead(head), PeerAnswerError)
          const parsed = parseResponseHead(head)
          assert.equal(parsed.statusCode, status)
          for (const [n, v] of unique) assert.equal(parsed.headers[n], v)
        }
      )
    )
    fc.assert(
      fc.property(fc.string(), (head) => {
        try {
          parseResponseHead(head)
        } catch (err) {
          assert.ok(err instanceof PeerAnswerError)
        }
      })
    )
  })
})
