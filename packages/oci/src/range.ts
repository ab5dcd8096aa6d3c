/**
 * HTTP `Range` headers for blobs: `bytes=a-b`, `bytes=a-` and `bytes=-n`. One range per request; anything
 * else is a typed error. Offsets are byte positions, `end` inclusive, as in HTTP and `fs.createReadStream`.
 */
import { truncate } from './digest.ts'
import { OciError } from './errors.ts'

/** A parsed range before the size is known: `{ start, end? }` (end inclusive) or the last `suffix` bytes. */
export type RangeSpec = { start: number; end?: number } | { suffix: number }

/** A range resolved against a size: bytes `start` to `end`, both inclusive, `0 ≤ start ≤ end < size`. */
export interface ByteRange {
  start: number
  end: number
}

/** Longest Range header parsed, in characters. */
const MAX_RANGE_HEADER_LENGTH = 256
const SINGLE_RANGE = /^bytes=[ \t]*(?:([0-9]+)-([0-9]*)|-([0-9]+))[ \t]*$/i

/** Thrown for a Range header that is not one well-formed byte range. Maps to `RANGE_INVALID` (416). */
export class InvalidRangeError extends OciError {
  override name = 'InvalidRangeError'
  readonly input: string

  constructor(input: string, reason: string) {
    super('RANGE_INVALID', `invalid range ${JSON.stringify(truncate(input))}: ${reason}`)
    this.input = input
  }
}

/** Thrown for a Range header with several ranges (`bytes=0-1,5-9`), which this project does not serve. */
export class MultipleRangesError extends InvalidRangeError {
  override name = 'MultipleRangesError'

  constructor(input: string) {
    super(input, 'multiple ranges are not supported')
  }
}

/** Thrown when a range lies outside the content; `size` is the content's size, for `Content-Range: bytes *\/size`. */
export class RangeNotSatisfiableError extends OciError {
  override name = 'RangeNotSatisfiableError'
  readonly size: number

  constructor(size: number, reason = 'range not satisfiable') {
    super('RANGE_INVALID', `${reason} (size ${size})`)
    this.size = size
  }
}

function toOffset(input: string, digits: string): number {
  const value = Number(digits)
  if (!Number.isSafeInteger(value)) throw new InvalidRangeError(input, 'offset is too large')
  return value
}

/**
 * Parses a Range header value.
 * @throws {MultipleRangesError} for more than one range; {@link InvalidRangeError} for anything malformed,
 * including `end < start` and offsets beyond 2^53.
 */
export function parseRange(header: string): RangeSpec {
  if (typeof header !== 'string' || header.length > MAX_RANGE_HEADER_LENGTH) {
    throw new InvalidRangeError(String(header).slice(0, 80), 'header too long')
  }
  if (header.includes(',')) {
    if (/^bytes=/i.test(header.trim())) throw new MultipleRangesError(header)
    throw new InvalidRangeError(header, 'expected bytes=<start>-<end>')
  }
  const match = SINGLE_RANGE.exec(header.trim())
  if (match === null)
    throw new InvalidRangeError(header, 'expected bytes=<start>-<end>, bytes=<start>- or bytes=-<length>')
  const [, startDigits, endDigits, suffixDigits] = match
  if (suffixDigits !== undefined) return { suffix: toOffset(header, suffixDigits) }
  const start = toOffset(header, startDigits as string)
  if (endDigits === undefined || endDigits === '') return { start }
  const end = toOffset(header, endDigits)
  if (end < start) throw new InvalidRangeError(header, 'end is before start')
  return { start, end }
}

/**
 * Resolves a range against the content size (bytes): clamps `end` to the last byte, turns a suffix into offsets.
 * @throws {RangeNotSatisfiableError} when the range starts at or after `size`, or is an empty suffix.
 */
export function resolveRange(spec: RangeSpec, size: number): ByteRange {
  if ('suffix' in spec) {
    if (spec.suffix === 0 || size === 0) throw new RangeNotSatisfiableError(size)
    return { start: Math.max(0, size - spec.suffix), end: size - 1 }
  }
  if (spec.start >= size) throw new RangeNotSatisfiableError(size)
  return { start: spec.start, end: Math.min(spec.end ?? size - 1, size - 1) }
}

/** Formats a range spec as a Range header value, `bytes=a-b`, `bytes=a-` or `bytes=-n`. */
export function formatRange(spec: RangeSpec): string {
  if ('suffix' in spec) return `bytes=-${spec.suffix}`
  return `bytes=${spec.start}-${spec.end ?? ''}`
}

/** The `Content-Range` value of a resolved range: `bytes a-b/size`. */
export function formatContentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`
}
