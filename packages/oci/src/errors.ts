/**
 * The OCI distribution spec's error codes, their HTTP statuses, and the JSON error body
 * (`{"errors":[{"code","message","detail"}]}`), built in one place.
 */

/** Every error code of the OCI distribution spec (plus `RANGE_INVALID` from distribution/distribution), mapped to the HTTP status it is sent with. */
export const OCI_ERROR_STATUS = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 404,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  RANGE_INVALID: 416
} as const satisfies Record<string, number>

/** An OCI distribution error code, such as `MANIFEST_UNKNOWN`. */
export type OciErrorCode = keyof typeof OCI_ERROR_STATUS

/** The default human-readable message of each code, from the spec's table. */
export const OCI_ERROR_MESSAGE: Record<OciErrorCode, string> = {
  BLOB_UNKNOWN: 'blob unknown to registry',
  BLOB_UPLOAD_INVALID: 'blob upload invalid',
  BLOB_UPLOAD_UNKNOWN: 'blob upload unknown to registry',
  DIGEST_INVALID: 'provided digest did not match uploaded content',
  MANIFEST_BLOB_UNKNOWN: 'manifest references a manifest or blob unknown to registry',
  MANIFEST_INVALID: 'manifest invalid',
  MANIFEST_UNKNOWN: 'manifest unknown to registry',
  NAME_INVALID: 'invalid repository name',
  NAME_UNKNOWN: 'repository name not known to registry',
  SIZE_INVALID: 'provided length did not match content length',
  UNAUTHORIZED: 'authentication required',
  DENIED: 'requested access to the resource is denied',
  UNSUPPORTED: 'the operation is unsupported',
  TOOMANYREQUESTS: 'too many requests',
  RANGE_INVALID: 'requested range not satisfiable'
}

/** One entry of an OCI error body. */
export interface OciErrorEntry {
  code: OciErrorCode
  message: string
  detail?: unknown
}

/** The JSON body of an OCI error response. */
export interface OciErrorBody {
  errors: OciErrorEntry[]
}

/**
 * An error that maps onto one OCI error code; `status` is the HTTP status to answer with.
 * Parsers in this package throw subclasses of it, so an HTTP handler can turn any of them into a response.
 */
export class OciError extends Error {
  override name = 'OciError'
  readonly code: OciErrorCode
  readonly status: number
  readonly detail: unknown

  constructor(code: OciErrorCode, message: string = OCI_ERROR_MESSAGE[code], detail?: unknown) {
    super(message)
    this.code = code
    this.status = OCI_ERROR_STATUS[code]
    this.detail = detail
  }

  /** The OCI error body of this error. */
  toBody(): OciErrorBody {
    return ociErrorBody(this.code, this.message, this.detail)
  }
}

/** Builds an OCI error body; `message` defaults to the spec's message for `code`; `detail` is left out when undefined. */
export function ociErrorBody(
  code: OciErrorCode,
  message: string = OCI_ERROR_MESSAGE[code],
  detail?: unknown
): OciErrorBody {
  const entry: OciErrorEntry = { code, message }
  if (detail !== undefined) entry.detail = detail
  return { errors: [entry] }
}

/** True when `code` is one of the OCI error codes this package knows. */
export function isOciErrorCode(code: string): code is OciErrorCode {
  return Object.hasOwn(OCI_ERROR_STATUS, code)
}
