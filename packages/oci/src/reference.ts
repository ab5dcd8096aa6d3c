/**
 * Image references (`registry/repository[:tag][@digest]`): parsing with Docker's defaults, and formatting.
 * Repository names follow the OCI distribution spec grammar; registries are a host name, IPv4 address or
 * bracketed IPv6 address with an optional port.
 */
import { isIPv4, isIPv6 } from 'node:net'
import { type Digest, InvalidDigestError, parseDigest, truncate } from './digest.ts'
import { OciError } from './errors.ts'

/** Docker's default registry, used when a reference names none. */
export const DEFAULT_REGISTRY = 'docker.io'
/** The namespace Docker puts single-component repositories of {@link DEFAULT_REGISTRY} in. */
export const DEFAULT_NAMESPACE = 'library'
/** The tag used when a reference has neither a tag nor a digest. */
export const DEFAULT_TAG = 'latest'
/** Longest repository name accepted, in characters (as distribution/reference). */
export const MAX_REPOSITORY_LENGTH = 255

/** A repository name per the OCI distribution spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/…)*`. */
export const REPOSITORY_PATTERN =
  /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
/** A tag per the OCI distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. */
export const TAG_PATTERN = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
const DOMAIN_NAME_PATTERN =
  /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$/
const PORT_PATTERN = /^[0-9]{1,5}$/

function isPort(value: string): boolean {
  return PORT_PATTERN.test(value) && Number(value) <= 65535
}

/** A parsed image reference. At least one of `tag` and `digest` is set. */
export interface ImageReference {
  /** Registry host, with port if any: `docker.io`, `localhost:5000`, `[::1]:5000`. */
  registry: string
  /** Repository path inside the registry: `library/nginx`. */
  repository: string
  /** Tag, such as `latest`. */
  tag?: string
  /** Digest of the manifest or index the reference pins. */
  digest?: Digest
}

/** Thrown for a string that is not an image reference, or a part that breaks the grammar. Maps to `NAME_INVALID` (or `DIGEST_INVALID` for the digest part). */
export class InvalidReferenceError extends OciError {
  override name = 'InvalidReferenceError'
  readonly input: string

  constructor(input: string, reason: string, code: 'NAME_INVALID' | 'DIGEST_INVALID' = 'NAME_INVALID') {
    super(code, `invalid reference ${JSON.stringify(truncate(input))}: ${reason}`)
    this.input = input
  }
}

/** Options of {@link parseReference}. */
export interface ParseReferenceOptions {
  /**
   * Apply Docker's defaults: registry `docker.io`, `library/` for single-component names on docker.io,
   * tag `latest` when neither tag nor digest is given. Default true. When false, a reference without a
   * registry, or without tag and digest, is an error.
   */
  defaults?: boolean
}

/**
 * True when `value` is a registry host: a domain name, IPv4 address or bracketed IPv6 address,
 * each with an optional port.
 */
export function isRegistryHost(value: string): boolean {
  let host = value
  if (value.startsWith('[')) {
    const close = value.indexOf(']')
    if (close < 0) return false
    const rest = value.slice(close + 1)
    if (rest !== '' && !(rest.startsWith(':') && isPort(rest.slice(1)))) return false
    return isIPv6(value.slice(1, close))
  }
  const colon = value.lastIndexOf(':')
  if (colon >= 0) {
    if (!isPort(value.slice(colon + 1))) return false
    host = value.slice(0, colon)
  }
  return isIPv4(host) || DOMAIN_NAME_PATTERN.test(host)
}

/** Docker's rule: the first path component names a registry when it has `.` or `:`, is `localhost`, or has uppercase letters. */
function looksLikeRegistry(component: string): boolean {
  return (
    component.includes('.') ||
    component.includes(':') ||
    component.startsWith('[') ||
    component === 'localhost' ||
    component !== component.toLowerCase()
  )
}

/**
 * Parses an image reference such as `registry.k8s.io/pause:3.10`, `nginx`,
 * `docker.io/library/nginx@sha256:…`, `localhost:5000/a/b:tag@sha256:…` or `[::1]:5000/x:y`.
 * @throws {InvalidReferenceError} for anything outside the grammar (never another error).
 */
export function parseReference(input: string, options: ParseReferenceOptions = {}): ImageReference {
  const defaults = options.defaults ?? true
  if (typeof input !== 'string' || input === '')
    throw new InvalidReferenceError(String(input), 'empty reference')
  if (input.includes('://')) throw new InvalidReferenceError(input, 'a reference has no URL scheme')

  let rest = input
  let digest: Digest | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1))
    } catch (err) {
      if (err instanceof InvalidDigestError)
        throw new InvalidReferenceError(input, err.message, 'DIGEST_INVALID')
      throw err
    }
    rest = rest.slice(0, at)
  }

  let registry: string | undefined
  const slash = rest.indexOf('/')
  if (slash >= 0 && looksLikeRegistry(rest.slice(0, slash))) {
    registry = rest.slice(0, slash)
    if (!isRegistryHost(registry)) {
      throw new InvalidReferenceError(
        input,
        `registry ${JSON.stringify(truncate(registry))} is not a host[:port]`
      )
    }
    rest = rest.slice(slash + 1)
  }

  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon >= 0 && !rest.slice(colon + 1).includes('/')) {
    tag = rest.slice(colon + 1)
    if (!TAG_PATTERN.test(tag))
      throw new InvalidReferenceError(input, `tag ${JSON.stringify(truncate(tag))} is invalid`)
    rest = rest.slice(0, colon)
  }

  let repository = rest
  if (!REPOSITORY_PATTERN.test(repository)) {
    throw new InvalidReferenceError(input, `repository ${JSON.stringify(truncate(repository))} is invalid`)
  }

  if (registry === undefined || registry === 'index.docker.io') {
    if (!defaults && registry === undefined) throw new InvalidReferenceError(input, 'no registry')
    registry = DEFAULT_REGISTRY
  }
  if (defaults && registry === DEFAULT_REGISTRY && !repository.includes('/')) {
    repository = `${DEFAULT_NAMESPACE}/${repository}`
  }
  if (repository.length > MAX_REPOSITORY_LENGTH) {
    throw new InvalidReferenceError(input, `repository is longer than ${MAX_REPOSITORY_LENGTH} characters`)
  }
  if (tag === undefined && digest === undefined) {
    if (!defaults) throw new InvalidReferenceError(input, 'needs a tag or a digest')
    tag = DEFAULT_TAG
  }

  const reference: ImageReference = { registry, repository }
  if (tag !== undefined) reference.tag = tag
  if (digest !== undefined) reference.digest = digest
  return reference
}

/** True when `input` parses with {@link parseReference}. Never throws. */
export function isReference(input: string, options?: ParseReferenceOptions): boolean {
  try {
    parseReference(input, options)
    return true
  } catch {
    return false
  }
}

/**
 * Formats a reference in its canonical form, `registry/repository[:tag][@digest]`, the same string
 * Spegel uses as a DHT key for tags.
 * @throws {InvalidReferenceError} when a field breaks the grammar or neither tag nor digest is set.
 */
export function formatReference(reference: ImageReference): string {
  const { registry, repository, tag, digest } = reference
  let out = `${registry}/${repository}`
  if (tag !== undefined) out += `:${tag}`
  if (digest !== undefined) out += `@${digest}`
  if (!isRegistryHost(registry)) throw new InvalidReferenceError(out, 'registry is not a host[:port]')
  if (!REPOSITORY_PATTERN.test(repository) || repository.length > MAX_REPOSITORY_LENGTH) {
    throw new InvalidReferenceError(out, 'repository is invalid')
  }
  if (tag !== undefined && !TAG_PATTERN.test(tag)) throw new InvalidReferenceError(out, 'tag is invalid')
  if (digest !== undefined) parseDigest(digest)
  if (tag === undefined && digest === undefined)
    throw new InvalidReferenceError(out, 'needs a tag or a digest')
  return out
}

/**
 * The key a node advertises for a tag: `registry/repository:tag` (no digest), as Spegel does.
 * Returns undefined when the reference has no tag.
 */
export function tagKey(reference: ImageReference): string | undefined {
  if (reference.tag === undefined) return undefined
  return formatReference({
    registry: reference.registry,
    repository: reference.repository,
    tag: reference.tag
  })
}
