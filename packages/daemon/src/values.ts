/**
 * Parsers of flag values in Spegel's syntax (go-arg over Go types): durations (`20ms`, `1m30s`), listen addresses
 * (`:5000`, `0.0.0.0:5000`, `[::]:5000`), booleans (`true`, `false`, `1`, `0`), log levels, regular expressions
 * and URLs. Each throws {@link InvalidValueError} with what was expected; the CLI adds the flag's name.
 */

/** A flag, environment or config value that does not parse. */
export class InvalidValueError extends Error {
  override name = 'InvalidValueError'
  readonly code = 'ERR_INVALID_VALUE'
}

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}

/** A Go duration (`300ms`, `1.5s`, `2m30s`, `0`) in ms. @throws {InvalidValueError} */
export function parseDuration(text: string): number {
  const value = text.trim()
  if (value === '0') return 0
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value)
    throw new InvalidValueError(`${JSON.stringify(text)} is not a duration (such as 20ms, 2s, 1m30s)`)
  return parts.reduce((ms, [, number, unit]) => ms + Number(number) * (UNIT_MS[unit as string] as number), 0)
}

/** A listen address. */
export interface ListenAddress {
  /** Empty for all interfaces. */
  host: string
  port: number
}

/** A Go listen address, `host:port` with an optional host (`:5000`, `10.0.0.1:5000`, `[::1]:5000`). @throws {InvalidValueError} */
export function parseListenAddress(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim())
  const port = Number(match?.[3])
  if (match === null || !Number.isInteger(port) || port > 65535)
    throw new InvalidValueError(
      `${JSON.stringify(text)} is not a listen address (such as :5000 or 0.0.0.0:5000)`
    )
  return { host: match[1] ?? match[2] ?? '', port }
}

/** A boolean as Go's strconv.ParseBool reads it. @throws {InvalidValueError} */
export function parseBoolean(text: string): boolean {
  const value = text.trim()
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false
  throw new InvalidValueError(`${JSON.stringify(text)} is not a boolean (true or false)`)
}

/** A whole number in `min..max`. @throws {InvalidValueError} */
export function parseInteger(text: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(text.trim())
  if (!/^-?\d+$/.test(text.trim()) || value < min || value > max)
    throw new InvalidValueError(`${JSON.stringify(text)} is not a whole number from ${min} to ${max}`)
  return value
}

const BYTE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }

/**
 * A size in bytes: a whole number, optionally followed by `B`, `KiB`, `MiB` or `GiB` (`32MiB`, `8388608`).
 * @throws {InvalidValueError} for anything else, or a size over `max` bytes.
 */
export function parseByteSize(text: string, max = Number.MAX_SAFE_INTEGER): number {
  const match = /^([0-9]{1,16})(B|KiB|MiB|GiB)?$/.exec(text.trim())
  const bytes = match === null ? Number.NaN : Number(match[1]) * (BYTE_UNITS[match[2] ?? ''] as number)
  if (!Number.isSafeInteger(bytes) || bytes > max)
    throw new InvalidValueError(
      `${JSON.stringify(text)} is not a size (bytes, or a number with B, KiB, MiB or GiB)`
    )
  return bytes
}

/** Log levels, as Spegel's `--log-level` (slog) names them. */
export const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const
/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A log level, any case. @throws {InvalidValueError} */
export function parseLogLevel(text: string): LogLevel {
  const value = text.trim().toUpperCase()
  if (!(LOG_LEVELS as readonly string[]).includes(value))
    throw new InvalidValueError(`${JSON.stringify(text)} is not a log level (${LOG_LEVELS.join(', ')})`)
  return value as LogLevel
}

/** A regular expression (Go's RE2 syntax is mostly JavaScript's). @throws {InvalidValueError} */
export function parseRegex(text: string): RegExp {
  try {
    return new RegExp(text)
  } catch (err) {
    throw new InvalidValueError(
      `${JSON.stringify(text)} is not a regular expression: ${(err as Error).message}`
    )
  }
}

/** An http(s) URL. @throws {InvalidValueError} */
export function parseHttpUrl(text: string): URL {
  let url: URL
  try {
    url = new URL(text.trim())
  } catch {
    throw new InvalidValueError(`${JSON.stringify(text)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidValueError(`${JSON.stringify(text)} is not an http or https URL`)
  return url
}

/** A list from one string: comma-separated, as go-arg reads list values from the environment. */
export function splitList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
}
