/**
 * Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`): parsing, and hashing bytes as they pass.
 */
import { createHash, type Hash } from 'node:crypto'
import { OciError } from './errors.ts'

/** A digest algorithm this project accepts. */
export type DigestAlgorithm = 'sha256' | 'sha512'

/** A validated content digest such as `sha256:e3b0c4…`; only {@link parseDigest} and the hashing helpers make one. */
export type Digest = string & { readonly __digest: unique symbol }

/** Hex length of each algorithm's digest. */
const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 }
const DIGEST_PATTERN = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/

/** Thrown for a string that is not a `sha256:`/`sha512:` digest with lowercase hex of the right length. Maps to `DIGEST_INVALID`. */
export class InvalidDigestError extends OciError {
  override name = 'InvalidDigestError'
  readonly input: string

  constructor(input: string, reason: string) {
    super('DIGEST_INVALID', `invalid digest ${JSON.stringify(truncate(input))}: ${reason}`)
    this.input = input
  }
}

/** True when `value` is a valid digest. Never throws. */
export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_PATTERN.test(value)
}

/**
 * Parses a digest string.
 * @throws {InvalidDigestError} when the algorithm is not sha256/sha512 or the hex part is malformed.
 */
export function parseDigest(value: string): Digest {
  if (isDigest(value)) return value
  if (typeof value !== 'string') throw new InvalidDigestError(String(value), 'not a string')
  const colon = value.indexOf(':')
  if (colon < 0) throw new InvalidDigestError(value, 'missing "<algorithm>:"')
  const algorithm = value.slice(0, colon)
  if (!(algorithm === 'sha256' || algorithm === 'sha512')) {
    throw new InvalidDigestError(value, `unsupported algorithm ${JSON.stringify(truncate(algorithm))}`)
  }
  const hex = value.slice(colon + 1)
  if (hex.length !== HEX_LENGTH[algorithm]) {
    throw new InvalidDigestError(
      value,
      `${algorithm} needs ${HEX_LENGTH[algorithm]} hex characters, got ${hex.length}`
    )
  }
  throw new InvalidDigestError(value, 'hex part must be lowercase 0-9a-f')
}

/** The algorithm of a digest (`sha256` or `sha512`). */
export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256'
}

/** The hex part of a digest, after the colon. */
export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1)
}

/** Computes the digest of `bytes` (default algorithm sha256). */
export function digestOf(bytes: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest
}

/** Hashes bytes incrementally, for verifying a stream as it passes. */
export interface Digester {
  /** Adds bytes to the hash. */
  update(chunk: Uint8Array): void
  /** Bytes hashed so far. */
  readonly bytes: number
  /** The digest of everything hashed; call once, at the end. */
  digest(): Digest
}

/** Creates an incremental {@link Digester} for `algorithm` (default sha256). */
export function createDigester(algorithm: DigestAlgorithm = 'sha256'): Digester {
  const hash: Hash = createHash(algorithm)
  let bytes = 0
  return {
    update(chunk) {
      hash.update(chunk)
      bytes += chunk.byteLength
    },
    get bytes() {
      return bytes
    },
    digest() {
      return `${algorithm}:${hash.digest('hex')}` as Digest
    }
  }
}

/** Shortens long input for error messages (at most 80 characters). */
export function truncate(value: string, max = 80): string {
  return value.length > max ? `${value.slice(0, max)}…` : value
}
