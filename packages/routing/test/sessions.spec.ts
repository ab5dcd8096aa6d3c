import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { type PeerId, type Stream, StreamMessageEvent } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { RequestTimeoutError } from '../src/errors.ts'
import { FrameChannel } from '../src/frames.ts'
import { decodeMessage, encodeMessage, type KadMessage, MessageType } from '../src/kad-message.ts'
import { Sessions } from '../src/sessions.ts'
import { waitFor } from './cluster.ts'

/** How the test peer treats a request: answer it (echoing its key), ignore it, or close the stream. */
type Behaviour = (request: KadMessage) => 'answer' | 'ignore' | 'close'

/**
 * Sessions whose streams reach an in-memory peer (a stream pair per opened session) that behaves as told.
 * Records the streams opened.
 */
async function sessionsToPeer(behaviour: Behaviour, idleMs?: number) {
  const peer: PeerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const opened: Stream[] = []
  const sessions = new Sessions(async () => {
    const [outbound, inbound] = await streamPair()
    opened.push(outbound)
    const channel = new FrameChannel(inbound, 4096, {
      frame: (bytes) => {
        const request = decodeMessage(bytes)
        const action = behaviour(request)
        if (action === 'answer')
          channel.send(encodeMessage({ type: request.type, key: request.key, closer: [], providers: [] }))
        else if (action === 'close') inbound.close().catch(() => {})
      },
      end: () => {}
    })
    return outbound
  }, idleMs)
  return { peer, sessions, opened }
}

/** `bytes` with their varint length prefix. */
function framed(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from([bytes.length, ...bytes]) // answers here are shorter than 128 bytes
}

const request = (key: number): KadMessage => ({
  type: MessageType.GET_PROVIDERS,
  key: new Uint8Array([key]),
  closer: [],
  providers: []
})

describe('Sessions', () => {
  it('answers requests sent at once each with its own answer, all on one stream', async () => {
    const { peer, sessions, opened } = await sessionsToPeer(() => 'answer')
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sessions.request(peer, request(i), 2000))
    )
    assert.deepEqual(
      answers.map((a) => a.key?.[0]),
      Array.from({ length: 20 }, (_, i) => i)
    )
    assert.equal(opened.length, 1)
    sessions.closeAll()
  })

  it('fails a request the peer does not answer in time with a TimeoutError, and opens a new stream for the next', async () => {
    let first = true
    const { peer, sessions, opened } = await sessionsToPeer(() => {
      if (!first) return 'answer'
      first = false
      return 'ignore'
    })
    const started = Date.now()
    await assert.rejects(sessions.request(peer, request(1), 100), RequestTimeoutError)
    assert.ok(Date.now() - started < 1000, 'the timeout is the request’s, not a longer one')
    const answer = await sessions.request(peer, request(2), 2000)
    assert.equal(answer.key?.[0], 2)
    assert.equal(opened.length, 2)
    sessions.closeAll()
  })

  it('takes an answer that arrived while the process was starved past its deadline', async () => {
    const { peer, sessions, opened } = await sessionsToPeer((r) => (r.key?.[0] === 0 ? 'answer' : 'ignore'))
    await sessions.request(peer, request(0), 2000) // the session is open
    const answered = sessions.request(peer, request(3), 40)
    for (let i = 0; i < 10; i++) await Promise.resolve() // its deadline timer is armed
    // The answer lands 10 ms after the deadline, handed to the asking side at once (no simulated network delay)...
    const answer = encodeMessage(request(3))
    setTimeout(() => opened[0]?.dispatchEvent(new StreamMessageEvent(framed(answer))), 50)
    // ...but the process gets no CPU for 100 ms: when it wakes, both are due and the deadline runs first.
    const until = Date.now() + 100
    while (Date.now() < until);
    assert.equal((await answered).key?.[0], 3)
    sessions.closeAll()
  })

  it('rejects a waiting request when the peer closes the stream', async () => {
    const { peer, sessions } = await sessionsToPeer(() => 'close')
    await assert.rejects(sessions.request(peer, request(1), 5000), /closed/)
  })

  it('closes a session that stays unused for its idle time', async () => {
    const { peer, sessions, opened } = await sessionsToPeer(() => 'answer', 100)
    await sessions.request(peer, request(1), 2000)
    const stream = opened[0] as Stream
    assert.equal(stream.writeStatus, 'writable')
    await waitFor(() => stream.writeStatus !== 'writable', 2000, 'the idle session to close')
    await sessions.request(peer, request(2), 2000)
    assert.equal(opened.length, 2)
    sessions.closeAll()
  })
})
