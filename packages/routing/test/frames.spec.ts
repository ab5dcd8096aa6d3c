import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import fc from 'fast-check'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { InvalidFrameError } from '../src/errors.ts'
import { FrameChannel } from '../src/frames.ts'

/** The parts of a stream a FrameChannel uses: events in, sends and aborts recorded. */
class FakeStream extends EventTarget {
  readonly sent: Uint8Array[] = []
  aborted: Error | undefined
  send(data: Uint8Array): boolean {
    this.sent.push(data)
    return true
  }
  abort(error: Error): void {
    this.aborted = error
  }
  /** Delivers bytes as the remote's next message. */
  receive(bytes: Uint8Array | Uint8ArrayList): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data: bytes }))
  }
}

/** A channel over a fake stream, recording frames and how it ended. */
function channel(maxFrameBytes = 1024) {
  const stream = new FakeStream()
  const frames: Uint8Array[] = []
  const ends: Array<Error | undefined> = []
  const framesChannel = new FrameChannel(stream as unknown as Stream, maxFrameBytes, {
    frame: (bytes) => frames.push(bytes.slice()),
    end: (error) => ends.push(error)
  })
  return { stream, frames, ends, channel: framesChannel }
}

const encodeFrame = (bytes: Uint8Array): Uint8Array => {
  const out = new Uint8Array(varint.encodingLength(bytes.byteLength) + bytes.byteLength)
  varint.encodeUint8Array(bytes.byteLength, out)
  out.set(bytes, out.byteLength - bytes.byteLength)
  return out
}

describe('FrameChannel', () => {
  it('hands over the same frames however the bytes are split into messages', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 50 }),
        fc.boolean(),
        (sent, cuts, asList) => {
          const { stream, frames, ends } = channel()
          const wire = Buffer.concat(sent.map(encodeFrame))
          let at = 0
          for (let i = 0; at < wire.byteLength; i++) {
            const piece = wire.subarray(at, at + (cuts[i % cuts.length] as number))
            at += piece.byteLength
            stream.receive(asList ? new Uint8ArrayList(piece) : piece)
          }
          assert.deepEqual(
            frames.map((f) => Buffer.from(f)),
            sent.map((f) => Buffer.from(f))
          )
          assert.deepEqual(ends, [])
        }
      )
    )
  })

  it('sends a frame as its varint length followed by its bytes', () => {
    const { stream, channel: frames } = channel()
    const payload = new Uint8Array(300).fill(7)
    frames.send(payload)
    assert.deepEqual(Buffer.from(stream.sent[0] as Uint8Array), Buffer.from(encodeFrame(payload)))
    assert.deepEqual([...(stream.sent[0] as Uint8Array).subarray(0, 2)], [0xac, 0x02])
  })

  it('ends with InvalidFrameError and aborts the stream on a frame over the limit', () => {
    const { stream, frames, ends } = channel(100)
    stream.receive(encodeFrame(new Uint8Array(101)))
    assert.deepEqual(frames, [])
    assert.equal(ends.length, 1)
    assert.ok(ends[0] instanceof InvalidFrameError)
    assert.ok(stream.aborted instanceof InvalidFrameError)
  })

  it('ends with InvalidFrameError on a length prefix longer than a varint may be', () => {
    const { stream, ends } = channel()
    stream.receive(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))
    assert.ok(ends[0] instanceof InvalidFrameError)
  })

  it('ends without an error when the remote closes its side after whole frames', () => {
    const { stream, frames, ends } = channel()
    stream.receive(encodeFrame(new Uint8Array([1, 2, 3])))
    stream.dispatchEvent(new Event('remoteCloseWrite'))
    assert.equal(frames.length, 1)
    assert.deepEqual(ends, [undefined])
  })

  it('ends with InvalidFrameError when the remote closes its side in the middle of a frame', () => {
    const { stream, ends } = channel()
    stream.receive(encodeFrame(new Uint8Array(10)).subarray(0, 5))
    stream.dispatchEvent(new Event('remoteCloseWrite'))
    assert.ok(ends[0] instanceof InvalidFrameError)
  })

  it('ends with the error of a stream that was reset, once, and hands over nothing after', () => {
    const { stream, frames, ends, channel: frameChannel } = channel()
    const reset = new Error('reset')
    stream.dispatchEvent(Object.assign(new Event('close'), { error: reset }))
    stream.dispatchEvent(new Event('close'))
    stream.receive(encodeFrame(new Uint8Array([1])))
    assert.deepEqual(ends, [reset])
    assert.deepEqual(frames, [])
    assert.equal(frameChannel.done, true)
  })
})
