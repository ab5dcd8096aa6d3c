/**
 * OCI distribution paths a pull uses — `/v2/`, `/v2/<name>/manifests/<tag|digest>`,
 * `/v2/<name>/blobs/<digest>` — with containerd's `?ns=<registry>` query naming the upstream registry.
 */
import { type Digest, InvalidDigestError, parseDigest, truncate } from './digest.ts'
import { OciError, type OciErrorCode } from './errors.ts'
import {
  formatReference,
  type ImageReference,
  isRegistryHost,
  MAX_REPOSITORY_LENGTH,
  REPOSITORY_PATTERN,
  TAG_PATTERN
} from './reference.ts'

/** Longest request target parsed, in characters; longer ones are rejected before any other work. */
export const MAX_DISTRIBUTION_PATH_LENGTH = 4096

/** `GET /v2/`: the API version check. */
export interface BasePath {
  kind: 'base'
}

/** `/v2/<repository>/manifests/<tag|digest>`; exactly one of `tag` and `digest` is set. */
export interface ManifestPath {
  kind: 'manifest'
  repository: string
  tag?: string
  digest?: Digest
  /** The upstream registry from `?ns=`, when given. */
  registry?: string
}

/** `/v2/<repository>/blobs/<digest>`. */
export interface BlobPath {
  kind: 'blob'
  repository: string
  digest: Digest
  /** The upstream registry from `?ns=`, when given. */
  registry?: string
}

/** A parsed distribution request target. */
export type DistributionPath = BasePath | ManifestPath | BlobPath

/** Thrown for a request target that is not a pull path of the distribution API. `code` says which part is wrong. */
export class InvalidPathError extends OciError {
  override name = 'InvalidPathError'
  readonly input: string

  constructor(input: string, reason: string, code: OciErrorCode = 'NAME_INVALID') {
    super(code, `invalid path ${JSON.stringify(truncate(input))}: ${reason}`)
    this.input = input
  }
}

/**
 * Parses a request target (`req.url`: path and optional query) of a pull.
 * Percent-encoded characters in the path are refused (no valid name, tag or digest has one), so encoded
 * slashes and dots cannot smuggle traversal past the grammar.
 * @throws {InvalidPathError} `NAME_INVALID` for bad names, `DIGEST_INVALID` for bad digests, `UNSUPPORTED` for other endpoints.
 */
export function parseDistributionPath(target: string): DistributionPath {
  if (typeof target !== 'string' || target.length > MAX_DISTRIBUTION_PATH_LENGTH) {
    throw new InvalidPathError(String(target), 'too long')
  }
  const q = target.indexOf('?')
  const path = q < 0 ? target : target.slice(0, q)
  if (path === '/v2' || path === '/v2/') return { kind: 'base' }
  if (!path.startsWith('/v2/')) throw new InvalidPathError(target, 'not under /v2/', 'UNSUPPORTED')
  if (path.includes('%')) throw new InvalidPathError(target, 'percent-encoded characters are not allowed')

  const segments = path.slice(4).split('/')
  if (segments.length < 3) {
    throw new InvalidPathError(
      target,
      'expected /v2/<name>/manifests/<reference> or /v2/<name>/blobs/<digest>',
      'UNSUPPORTED'
    )
  }
  const last = segments[segments.length - 1] as string
  const endpoint = segments[segments.length - 2]
  const repository = segments.slice(0, -2).join('/')
  if (endpoint !== 'manifests' && endpoint !== 'blobs') {
    throw new InvalidPathError(target, 'only manifests and blobs are served', 'UNSUPPORTED')
  }
  if (repository.length > MAX_REPOSITORY_LENGTH || !REPOSITORY_PATTERN.test(repository)) {
    throw new InvalidPathError(target, `repository ${JSON.stringify(truncate(repository))} is invalid`)
  }
  const registry = q < 0 ? undefined : parseNamespace(target, target.slice(q + 1))

  if (endpoint === 'blobs') {
    const blob: BlobPath = { kind: 'blob', repository, digest: parsePathDigest(target, last) }
    if (registry !== undefined) blob.registry = registry
    return blob
  }
  const manifest: ManifestPath = { kind: 'manifest', repository }
  if (last.includes(':')) manifest.digest = parsePathDigest(target, last)
  else if (TAG_PATTERN.test(last)) manifest.tag = last
  else
    throw new InvalidPathError(target, `tag ${JSON.stringify(truncate(last))} is invalid`, 'MANIFEST_INVALID')
  if (registry !== undefined) manifest.registry = registry
  return manifest
}

function parsePathDigest(target: string, value: string): Digest {
  try {
    return parseDigest(value)
  } catch (err) {
    if (err instanceof InvalidDigestError) throw new InvalidPathError(target, err.message, 'DIGEST_INVALID')
    throw err
  }
}

function parseNamespace(target: string, query: string): string | undefined {
  let ns: string | null
  try {
    ns = new URLSearchParams(query).get('ns')
  } catch {
    throw new InvalidPathError(target, 'malformed query')
  }
  if (ns === null || ns === '') return undefined
  if (!isRegistryHost(ns))
    throw new InvalidPathError(target, `ns ${JSON.stringify(truncate(ns))} is not a registry host`)
  return ns
}

/** Formats a distribution path back into a request target, with `?ns=` (URL-encoded, as containerd sends it) when a registry is set. */
export function formatDistributionPath(path: DistributionPath): string {
  if (path.kind === 'base') return '/v2/'
  const reference = path.kind === 'blob' ? path.digest : (path.digest ?? path.tag)
  const endpoint = path.kind === 'blob' ? 'blobs' : 'manifests'
  const query = path.registry === undefined ? '' : `?ns=${encodeURIComponent(path.registry)}`
  return `/v2/${path.repository}/${endpoint}/${reference}${query}`
}

/**
 * The image reference a manifest path names, when it names its registry (`ns`): tag paths give
 * `registry/repository:tag`, digest paths `registry/repository@digest`. Undefined without `ns`.
 */
export function referenceOfPath(path: ManifestPath): ImageReference | undefined {
  if (path.registry === undefined) return undefined
  const reference: ImageReference = { registry: path.registry, repository: path.repository }
  if (path.tag !== undefined) reference.tag = path.tag
  if (path.digest !== undefined) reference.digest = path.digest
  formatReference(reference)
  return reference
}
