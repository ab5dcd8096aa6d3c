/**
 * Errors of content stores. Each has a stable `name`; the not-found and mismatch errors are OCI errors, so
 * an HTTP handler can answer them directly.
 */
import { type Digest, OciError } from '@kadmirror/oci'

/** The store does not hold `digest`. Maps to `BLOB_UNKNOWN` (404). */
export class ContentNotFoundError extends OciError {
  override name = 'ContentNotFoundError'
  readonly digest: Digest

  constructor(digest: Digest) {
    super('BLOB_UNKNOWN', `content ${digest} not found`)
    this.digest = digest
  }
}

/** Bytes written to a store did not hash to, or were not the size of, what was expected. Maps to `DIGEST_INVALID` / `SIZE_INVALID`. */
export class ContentMismatchError extends OciError {
  override name = 'ContentMismatchError'

  constructor(expected: string, actual: string, what: 'digest' | 'size' = 'digest') {
    super(
      what === 'digest' ? 'DIGEST_INVALID' : 'SIZE_INVALID',
      `expected ${what} ${expected}, got ${actual}`
    )
  }
}

/** An image cannot be tagged because content it needs is missing. Maps to `MANIFEST_BLOB_UNKNOWN`. */
export class IncompleteImageError extends OciError {
  override name = 'IncompleteImageError'

  constructor(root: Digest) {
    super('MANIFEST_BLOB_UNKNOWN', `image ${root} is incomplete: the store lacks content it references`)
  }
}

/** The store was used after `close()`. */
export class StoreClosedError extends Error {
  override name = 'StoreClosedError'

  constructor() {
    super('the content store is closed')
  }
}

/** A directory is not a valid OCI image layout (missing or wrong `oci-layout`, unreadable `index.json`). */
export class InvalidLayoutError extends Error {
  override name = 'InvalidLayoutError'
}
