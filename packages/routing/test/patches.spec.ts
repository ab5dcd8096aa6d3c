import assert from 'node:assert/strict'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import { logger } from '@libp2p/logger'
import { Uint8ArrayList } from 'uint8arraylist'
import { useHalfWindowUpdates } from '../src/patches.ts'

// yamux frame types on the wire (spec): 0 data, 1 window update.
const DATA = 0
const WINDOW_UPDATE = 1
const WINDOW = 256 * 1024

type YamuxFrame = Parameters<YamuxStream['handleData']>[0]

interface SentFrame {
  type: number
  length: number
}

/** An established yamux stream whose frames are recorded instead of sent. */
function establishedStream(): { stream: YamuxStream; sent: SentFrame[]; receive(bytes: number): void } {
  const sent: SentFrame[] = []
  const stream = new YamuxStream({
    id: '1',
    streamId: 1,
    log: logger('kadmirror:test:yamux'),
    direction: 'inbound',
    state: StreamState.Established,
    getRTT: () => -1,
    sendFrame: (header) => {
      sent.push({ type: header.type, length: header.length })
      return true
    }
  })
  const receive = (bytes: number): void =>
    stream.handleData({
      header: { type: DATA, flag: 0, streamID: 1, length: bytes },
      // routing's uint8arraylist may be another version than yamux's; the stream only reads its length
      data: new Uint8ArrayList(new Uint8Array(bytes)) as unknown as YamuxFrame['data']
    })
  return { stream, sent, receive }
}

describe('yamux window updates', () => {
  before(() => useHalfWindowUpdates())

  it('sends no window update for small messages on an established stream', () => {
    const { sent, receive } = establishedStream()
    for (let i = 0; i < 100; i++) receive(200)
    assert.deepEqual(sent, [])
  })

  it('grants the whole consumed window once half of it is used', () => {
    const { sent, receive } = establishedStream()
    receive(WINDOW / 2 - 1)
    assert.deepEqual(sent, [])
    receive(1)
    assert.deepEqual(sent, [{ type: WINDOW_UPDATE, length: WINDOW / 2 }])
    receive(100)
    assert.equal(sent.length, 1)
  })

  it('still acknowledges a stream the remote opened with its first window update', () => {
    const { stream, sent, receive } = establishedStream()
    stream.state = StreamState.SYNReceived
    receive(10)
    assert.equal(sent.length, 1)
    assert.equal(sent[0]?.type, WINDOW_UPDATE)
    assert.equal(stream.state, StreamState.Established)
  })
})
