/**
 * Length-prefixed frames (unsigned varint length, then the bytes; libp2p's framing of DHT messages) on a libp2p
 * stream, read from the stream's `message` events and handed to a callback as each frame completes.
 *
 * `lpStream` from @libp2p/utils reads a frame's length one byte at a time, each read a promise, an abort-signal
 * race and a list slice, and adds listeners for every read; on streams that carry one small message per request
 * that was most of what a lookup allocated. Here a stream has three listeners for its whole life and a frame that
 * arrives in one chunk is handed over without a copy.
 */
import type { Stream } from '@libp2p/interface'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { InvalidFrameError } from './errors.ts'

/** What a {@link FrameChannel} calls. */
export interface FrameHandlers {
  /** A complete frame arrived (a view into the received bytes, which are not reused). */
  frame(bytes: Uint8Array): void
  /**
   * The stream can bring no more frames: `error` when it failed, was reset, or sent a frame that is too long or
   * cut short; undefined when the remote closed its writing side after whole frames. Called once.
   */
  end(error?: Error): void
}

/** The longest varint a frame length may take, in bytes (lengths below 2^35). */
const MAX_LENGTH_BYTES = 5

/**
 * Reads the varint at the start of `list` without consuming it: its value and size, or undefined while the
 * list holds only part of it.
 * @throws {InvalidFrameError} when the varint is longer than {@link MAX_LENGTH_BYTES}.
 */
function peekLength(list: Uint8ArrayList): { length: number; size: number } | undefined {
  let length = 0
  for (let i = 0; i < list.byteLength; i++) {
    if (i === MAX_LENGTH_BYTES) throw new InvalidFrameError('frame length is not a varint')
    const byte = list.get(i)
    length += (byte & 0x7f) * 2 ** (7 * i)
    if (byte < 0x80) return { length, size: i + 1 }
  }
  if (list.byteLength >= MAX_LENGTH_BYTES) throw new InvalidFrameError('frame length is not a varint')
  return undefined
}

/** Frames in and out of one stream. */
export class FrameChannel {
  readonly stream: Stream
  private readonly maxFrameBytes: number
  private readonly handlers: FrameHandlers
  private readonly buffer = new Uint8ArrayList()
  private ended = false

  /** `maxFrameBytes`: longest frame accepted; a longer one ends the channel with {@link InvalidFrameError}. */
  constructor(stream: Stream, maxFrameBytes: number, handlers: FrameHandlers) {
    this.stream = stream
    this.maxFrameBytes = maxFrameBytes
    this.handlers = handlers
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    stream.addEventListener('close', this.onClose)
  }

  /** Whether the channel has ended (no more frames will be handed over). */
  get done(): boolean {
    return this.ended
  }

  /**
   * Queues a frame for sending. Returns false when the stream's send buffer is full (the frame is still queued;
   * a sender that may produce without bound waits for the stream's `drain` event).
   * @throws when the stream is no longer writable.
   */
  send(frame: Uint8Array): boolean {
    const size = varint.encodingLength(frame.byteLength)
    const bytes = new Uint8Array(size + frame.byteLength)
    varint.encodeUint8Array(frame.byteLength, bytes)
    bytes.set(frame, size)
    return this.stream.send(bytes)
  }

  private readonly onMessage = (event: { data: Uint8Array | Uint8ArrayList }): void => {
    if (this.ended) return
    this.buffer.append(event.data)
    try {
      for (;;) {
        const header = peekLength(this.buffer)
        if (header === undefined) return
        if (header.length > this.maxFrameBytes)
          throw new InvalidFrameError(`frame of ${header.length} bytes is over ${this.maxFrameBytes}`)
        const total = header.size + header.length
        if (this.buffer.byteLength < total) return
        const frame = this.buffer.subarray(header.size, total)
        this.buffer.consume(total)
        this.handlers.frame(frame)
        if (this.ended) return
      }
    } catch (err) {
      this.finish(err as Error)
      this.stream.abort(err as Error)
    }
  }

  private readonly onRemoteCloseWrite = (): void => {
    this.finish(
      this.buffer.byteLength > 0 ? new InvalidFrameError('stream ended in the middle of a frame') : undefined
    )
  }

  private readonly onClose = (event: Event): void => {
    const error = (event as Event & { error?: Error }).error
    this.finish(error)
  }

  private finish(error?: Error): void {
    if (this.ended) return
    this.ended = true
    this.buffer.consume(this.buffer.byteLength)
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    this.stream.removeEventListener('close', this.onClose)
    this.handlers.end(error)
  }
}
