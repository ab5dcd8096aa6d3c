/**
 * A blob body from a peer, whichever client read it: chunks in buffers the reader holds until it releases them.
 * The pooled client (blob-client.ts) reuses a released buffer for its next read, so a chunk must not be touched
 * after `release()`; undici's bodies give fresh buffers and ignore releases.
 */
import type { Dispatcher } from 'undici'
import { PeerAnswerError } from './errors.ts'

/** What a body calls as it is read. */
export interface BodyHandlers {
  /** The next bytes; `bytes` stays valid until `release()` is called (once). */
  chunk(bytes: Buffer, release: () => void): void
  /** Every byte arrived. */
  end(): void
  /** The body failed (connection lost, stalled, cut short). */
  error(err: unknown): void
}

/** A peer's body, read once. */
export interface PeerBody {
  /** Starts delivering to `handlers`. Call once. */
  read(handlers: BodyHandlers): void
  /** Stops reading until {@link PeerBody.resume}. */
  pause(): void
  resume(): void
  /** Drops what is left (a small rest may be read to keep the connection). Never throws. */
  discard(): void
}

const noRelease = (): void => {}

/** Adapts an undici body (fresh buffers, a Readable) to {@link PeerBody}. */
export function undiciBody(body: Dispatcher.ResponseData['body']): PeerBody {
  return {
    read(handlers) {
      let ended = false
      body.on('data', (chunk: Buffer) => handlers.chunk(chunk, noRelease))
      body.on('end', () => {
        ended = true
        handlers.end()
      })
      body.on('error', (err) => handlers.error(err))
      body.on('close', () => {
        if (!ended && !body.readableEnded) handlers.error(new PeerAnswerError('peer closed the body early'))
      })
    },
    pause: () => void body.pause(),
    resume: () => void body.resume(),
    discard() {
      body.on('error', () => {})
      body.dump({ limit: 64 * 1024 }).catch(() => {})
    }
  }
}

/**
 * The body without its first `count` bytes: a peer that answers a Range request with the whole blob (200, as some
 * do) still resumes where the last one stopped.
 * @throws {PeerAnswerError} (through `error`) when the body ends before `count` bytes.
 */
export function skipping(body: PeerBody, count: number): PeerBody {
  return {
    pause: () => body.pause(),
    resume: () => body.resume(),
    discard: () => body.discard(),
    read(handlers) {
      let left = count
      body.read({
        chunk(bytes, release) {
          if (left === 0) return handlers.chunk(bytes, release)
          if (bytes.byteLength <= left) {
            left -= bytes.byteLength
            return release()
          }
          const rest = bytes.subarray(left)
          left = 0
          handlers.chunk(rest, release)
        },
        end() {
          if (left > 0) handlers.error(new PeerAnswerError('peer ended before the resume offset'))
          else handlers.end()
        },
        error: (err) => handlers.error(err)
      })
    }
  }
}
