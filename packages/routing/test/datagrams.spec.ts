import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { multiaddr } from '@multiformats/multiaddr'
import fc from 'fast-check'
import pino from 'pino'
import { createAllowList } from '../src/access.ts'
import { DATAGRAM_REQUEST_BYTES } from '../src/constants.ts'
import {
  DatagramKind,
  datagramKey,
  decodeDatagram,
  encodeAnswerWithin,
  encodeDatagram
} from '../src/datagram-wire.ts'
import { type DatagramAddress, DatagramLookups, datagramAddressOf } from '../src/datagrams.ts'
import { InvalidFrameError, RequestTimeoutError, RouterClosedError } from '../src/errors.ts'
import { type KadMessage, MessageType } from '../src/kad-message.ts'

const log = pino({ level: 'silent' })
const KEY = new TextEncoder().encode('a-key')
const request: KadMessage = { type: MessageType.GET_PROVIDERS, key: KEY, closer: [], providers: [] }

/** A provider as an answer carries it: a 38-byte peer id multihash, no addresses. */
const provider = () => ({ id: randomBytes(38), multiaddrs: [] })

/** An answerer that gives `count` providers for any key. */
const answering =
  (count: number) =>
  (message: KadMessage): KadMessage => ({
    type: message.type,
    ...(message.key === undefined ? {} : { key: message.key }),
    closer: [],
    providers: Array.from({ length: count }, provider)
  })

/** Datagram lookups bound on 127.0.0.1 at any port, and their address. */
async function bound(init: Partial<ConstructorParameters<typeof DatagramLookups>[0]> = {}) {
  const lookups = new DatagramLookups({ log, ...init })
  await lookups.bind(['/ip4/127.0.0.1/tcp/0'], () => 0)
  const [address] = lookups.addressesFor(['/ip4/127.0.0.1/tcp/1'])
  const to = datagramAddressOf(multiaddr(address as string)) as DatagramAddress
  return { lookups, to }
}

describe('lookups over UDP', () => {
  const open: DatagramLookups[] = []
  const start = async (init: Partial<ConstructorParameters<typeof DatagramLookups>[0]> = {}) => {
    const node = await bound(init)
    open.push(node.lookups)
    return node
  }

  afterEach(() => {
    for (const lookups of open.splice(0)) lookups.close()
  })

  it('answers a GET_PROVIDERS request with what its answerer gives', async () => {
    const server = await start()
    server.lookups.serve(answering(3))
    const client = await start()
    const answer = await client.lookups.request(server.to, request, 1000)
    assert.equal(answer.type, MessageType.GET_PROVIDERS)
    assert.deepEqual(new Uint8Array(answer.key ?? []), KEY)
    assert.equal(answer.providers.length, 3)
  })

  it('sends a request again when the first went unanswered', async () => {
    const server = await start()
    const client = await start()
    // Not serving yet: the first datagram is dropped as a lost one would be; the retry (50 ms) is answered.
    setTimeout(() => server.lookups.serve(answering(1)), 20)
    const answer = await client.lookups.request(server.to, request, 1000)
    assert.equal(answer.providers.length, 1)
  })

  it('fails a request with RequestTimeoutError when nothing answers', async () => {
    const server = await start()
    const client = await start()
    await assert.rejects(client.lookups.request(server.to, request, 100), RequestTimeoutError)
  })

  it('never answers with more bytes than the request carried', async () => {
    const server = await start()
    server.lookups.serve(answering(100))
    const client = await start()
    const answer = await client.lookups.request(server.to, request, 1000)
    assert.ok(answer.providers.length > 10 && answer.providers.length < 100, `${answer.providers.length}`)
    const bytes = encodeAnswerWithin('00'.repeat(8), answer, DATAGRAM_REQUEST_BYTES)
    assert.ok(bytes !== undefined && bytes.length <= DATAGRAM_REQUEST_BYTES)
  })

  it('does not answer a request shorter than the padded size (a forged source would be amplified)', async () => {
    const server = await start()
    server.lookups.serve(answering(1))
    const raw = createSocket('udp4')
    raw.bind(0, '127.0.0.1')
    await once(raw, 'listening')
    const padded = encodeDatagram(DatagramKind.request, 'ab'.repeat(8), request)
    const length = padded.indexOf(0, 14 + 10)
    const answers: Buffer[] = []
    raw.on('message', (bytes) => answers.push(bytes))
    raw.send(padded.subarray(0, length), server.to.port, server.to.host)
    raw.send(padded, server.to.port, server.to.host)
    await new Promise((resolve) => setTimeout(resolve, 200))
    raw.close()
    assert.equal(answers.length, 1, 'only the padded request is answered')
  })

  it('answers GET_PROVIDERS only', async () => {
    const server = await start()
    server.lookups.serve(answering(1))
    const client = await start()
    const findNode: KadMessage = { ...request, type: MessageType.FIND_NODE }
    await assert.rejects(client.lookups.request(server.to, findNode, 150), RequestTimeoutError)
  })

  it('drops datagrams authenticated with another private-network key', async () => {
    const server = await start({ key: datagramKey(randomBytes(32)) as Uint8Array })
    server.lookups.serve(answering(1))
    const stranger = await start({ key: datagramKey(randomBytes(32)) as Uint8Array })
    const open = await start()
    await assert.rejects(stranger.lookups.request(server.to, request, 150), RequestTimeoutError)
    await assert.rejects(open.lookups.request(server.to, request, 150), RequestTimeoutError)
  })

  it('answers a member holding the same private-network key', async () => {
    const key = datagramKey(randomBytes(32)) as Uint8Array
    const server = await start({ key })
    server.lookups.serve(answering(2))
    const member = await start({ key })
    assert.equal((await member.lookups.request(server.to, request, 1000)).providers.length, 2)
  })

  it('drops requests from addresses outside the allow list', async () => {
    const server = await start({ allowed: createAllowList(['10.0.0.0/8']) })
    server.lookups.serve(answering(1))
    const client = await start()
    await assert.rejects(client.lookups.request(server.to, request, 150), RequestTimeoutError)
  })

  it('fails the requests waiting with RouterClosedError when it closes', async () => {
    const server = await start()
    const client = await start()
    const waiting = client.lookups.request(server.to, request, 5000)
    client.lookups.close()
    await assert.rejects(waiting, RouterClosedError)
  })

  it('binds another port when the one asked for is taken, and leaves out an address it cannot bind', async () => {
    const first = await start()
    const second = new DatagramLookups({ log })
    open.push(second)
    // 192.0.2.1 (TEST-NET) is no address of this host: left out; 127.0.0.1 at the taken port: another port.
    await second.bind(['/ip4/192.0.2.1/tcp/1', '/ip4/127.0.0.1/tcp/1'], () => first.to.port)
    const [address] = second.addressesFor(['/ip4/127.0.0.1/tcp/1'])
    const bound = datagramAddressOf(multiaddr(address as string)) as DatagramAddress
    assert.notEqual(bound.port, first.to.port)
    first.lookups.serve(answering(1))
    assert.equal((await second.request(first.to, request, 1000)).providers.length, 1)
  })

  it('announces a datagram address per address family it bound', async () => {
    const { lookups } = await start()
    const addresses = lookups.addressesFor([
      '/ip4/127.0.0.1/tcp/5001',
      '/ip4/10.1.2.3/tcp/5001',
      '/ip6/::1/tcp/5001'
    ])
    assert.equal(addresses.length, 2)
    assert.match(addresses[0] as string, /^\/ip4\/127\.0\.0\.1\/udp\/\d+$/)
    assert.match(addresses[1] as string, /^\/ip4\/10\.1\.2\.3\/udp\/\d+$/)
  })
})

describe('lookup datagrams on the wire', () => {
  it('reads the address a /udp/ multiaddr names, and nothing else', () => {
    assert.deepEqual(datagramAddressOf(multiaddr('/ip4/10.0.0.1/udp/5001')), {
      family: 4,
      host: '10.0.0.1',
      port: 5001
    })
    assert.deepEqual(datagramAddressOf(multiaddr('/ip6/::1/udp/7')), { family: 6, host: '::1', port: 7 })
    assert.equal(datagramAddressOf(multiaddr('/ip4/10.0.0.1/tcp/5001')), undefined)
    assert.equal(datagramAddressOf(multiaddr('/ip4/10.0.0.1/udp/0')), undefined)
    assert.equal(datagramAddressOf(multiaddr('/ip4/10.0.0.1/udp/5001/quic-v1')), undefined)
  })

  it('decodes what it encodes', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(DatagramKind.request, DatagramKind.answer),
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.boolean(),
        (kind, idBytes, key, authenticated) => {
          const id = Buffer.from(idBytes).toString('hex')
          const secret = authenticated ? datagramKey(new Uint8Array(32).fill(1)) : undefined
          const message: KadMessage = { type: MessageType.GET_PROVIDERS, key, closer: [], providers: [] }
          const decoded = decodeDatagram(encodeDatagram(kind, id, message, secret), secret)
          assert.equal(decoded.kind, kind)
          assert.equal(decoded.id, id)
          assert.deepEqual(new Uint8Array(decoded.message.key ?? []), key)
        }
      )
    )
  })

  it('rejects any other bytes with InvalidFrameError only', () => {
    const valid = encodeDatagram(DatagramKind.request, '01'.repeat(8), request)
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2048 }),
          fc
            .tuple(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 }))
            .map(([at, flip]) => valid.map((b, i) => (i === at ? b ^ flip : b)))
        ),
        fc.boolean(),
        (bytes, authenticated) => {
          const secret = authenticated ? datagramKey(new Uint8Array(32)) : undefined
          try {
            decodeDatagram(bytes, secret)
          } catch (err) {
            assert.ok(err instanceof InvalidFrameError, String(err))
          }
        }
      )
    )
  })

  it('refuses to encode a request whose message does not fit the padded size', () => {
    const huge: KadMessage = { ...request, key: new Uint8Array(DATAGRAM_REQUEST_BYTES) }
    assert.throws(() => encodeDatagram(DatagramKind.request, '00'.repeat(8), huge), InvalidFrameError)
  })
})
