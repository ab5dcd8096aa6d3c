/**
 * Every error the mirror package throws on purpose, one class per kind, each with a stable `name` and `code` (as
 * undici's `lib/core/errors.js`). Errors a client causes never leave the handler as exceptions: they become OCI
 * error bodies (see `respond.ts`). The README's error table lists the same codes; a test checks the two agree.
 */
import type { Digest } from '@kadmirror/oci'

/** The codes of {@link MirrorError}, one per error class. */
export const MIRROR_ERROR_CODES = [
  'ERR_INVALID_MIRROR_OPTION',
  'ERR_MIRROR_ALREADY_SERVING',
  'ERR_PEER_ANSWER',
  'ERR_NOT_HELD',
  'ERR_DIGEST_MISMATCH',
  'ERR_PEER_TOO_SLOW',
  'ERR_PEER_BUSY',
  'ERR_CONTENT_TRUNCATED',
  'ERR_HASH_WORKER'
] as const

/** One of {@link MIRROR_ERROR_CODES}. */
export type MirrorErrorCode = (typeof MIRROR_ERROR_CODES)[number]

/** The base of every mirror error: `code` says which kind it is. */
export abstract class MirrorError extends Error {
  abstract readonly code: MirrorErrorCode
}

/** An option of the handler is out of range (a negative timeout or retry count). */
export class InvalidMirrorOptionError extends MirrorError {
  override name = 'InvalidMirrorOptionError'
  readonly code: MirrorErrorCode = 'ERR_INVALID_MIRROR_OPTION'
}

/** `serve()` was called on a mirror server that already serves a handler. */
export class MirrorAlreadyServingError extends MirrorError {
  override name = 'MirrorAlreadyServingError'
  readonly code: MirrorErrorCode = 'ERR_MIRROR_ALREADY_SERVING'

  constructor(message = 'the mirror already serves a handler') {
    super(message)
  }
}

/** Why one peer's answer was refused (a bad status, a short or long body, a wrong media type); the mirror moves on. */
export class PeerAnswerError extends MirrorError {
  override name = 'PeerAnswerError'
  readonly code: MirrorErrorCode = 'ERR_PEER_ANSWER'
}

/** A peer answered 404: it no longer holds the content (a stale record), which says nothing about its health. */
export class NotHeldError extends PeerAnswerError {
  override name = 'NotHeldError'
  override readonly code: MirrorErrorCode = 'ERR_NOT_HELD'
  /** The node the peer named as fetching the blob from upstream now (a flash crowd), if it named one. */
  readonly fetcher: { id: string; registryUrl: string } | undefined

  constructor(message: string, fetcher?: { id: string; registryUrl: string }) {
    super(message)
    this.fetcher = fetcher
  }
}

/** A peer sent bytes that do not hash to the digest asked for. */
export class DigestMismatchError extends PeerAnswerError {
  override name = 'DigestMismatchError'
  override readonly code: MirrorErrorCode = 'ERR_DIGEST_MISMATCH'
  readonly expected: Digest
  readonly actual: Digest

  constructor(expected: Digest, actual: Digest) {
    super(`bytes hash to ${actual}, not ${expected}`)
    this.expected = expected
    this.actual = actual
  }
}

/** A peer sent a blob slower than the least throughput for a whole progress window (it trickles); the mirror moves on. */
export class PeerTooSlowError extends PeerAnswerError {
  override name = 'PeerTooSlowError'
  override readonly code: MirrorErrorCode = 'ERR_PEER_TOO_SLOW'
}

/**
 * A peer answered 429: it serves its maximum of blobs to peers right now. It is fine; the mirror asks another at once
 * (not charged to the retries) and prefers other peers for a moment.
 */
export class PeerBusyError extends PeerAnswerError {
  override name = 'PeerBusyError'
  override readonly code: MirrorErrorCode = 'ERR_PEER_BUSY'
}

/** The node's own store held fewer bytes than it declared for a blob. */
export class ContentTruncatedError extends MirrorError {
  override name = 'ContentTruncatedError'
  readonly code: MirrorErrorCode = 'ERR_CONTENT_TRUNCATED'
}

/** A hash worker thread died; transfers it was hashing fail, and a new worker takes later ones. */
export class HashWorkerError extends MirrorError {
  override name = 'HashWorkerError'
  readonly code: MirrorErrorCode = 'ERR_HASH_WORKER'
}
