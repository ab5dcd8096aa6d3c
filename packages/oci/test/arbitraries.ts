// fast-check generators of valid OCI values, shared by the property tests.
import fc from 'fast-check'
import type { Digest, ImageReference } from '../src/index.ts'

const alnum = fc.stringMatching(/^[a-z0-9]{1,8}$/)
const separator = fc.constantFrom('.', '_', '__', '-', '--')

/** A repository path component: alnum (separator alnum)*. */
export const pathComponent = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 2 }))
  .map(([head, rest]) => head + rest.map(([s, a]) => s + a).join(''))

/** A repository of 1–4 components. */
export const repository = fc.array(pathComponent, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'))

/** A tag. */
export const tag = fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}$/)

/** A sha256 or sha512 digest. */
export const digest: fc.Arbitrary<Digest> = fc.oneof(
  fc
    .array(fc.constantFrom(...'0123456789abcdef'.split('')), { minLength: 64, maxLength: 64 })
    .map((h) => `sha256:${h.join('')}` as Digest),
  fc
    .array(fc.constantFrom(...'0123456789abcdef'.split('')), { minLength: 128, maxLength: 128 })
    .map((h) => `sha512:${h.join('')}` as Digest)
)

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/)
const port = fc.integer({ min: 1, max: 65535 }).map(String)

/** A registry host that parsing always recognises as one (dotted name, localhost, IP), never docker.io. */
export const registry = fc
  .oneof(
    fc.array(label, { minLength: 2, maxLength: 3 }).map((l) => l.join('.')),
    fc.constant('localhost'),
    fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.')),
    fc.constantFrom('[::1]', '[fe80::1]', '[2001:db8::42]')
  )
  .chain((host) => fc.option(port, { nil: undefined }).map((p) => (p === undefined ? host : `${host}:${p}`)))
  .filter((host) => host !== 'docker.io' && host !== 'index.docker.io')

/** A canonical reference (registry, repository, and a tag and/or a digest). */
export const reference: fc.Arbitrary<ImageReference> = fc
  .record({
    registry,
    repository,
    tag: fc.option(tag, { nil: undefined }),
    digest: fc.option(digest, { nil: undefined })
  })
  .filter((r) => r.tag !== undefined || r.digest !== undefined)
  .map((r) => {
    const out: ImageReference = { registry: r.registry, repository: r.repository }
    if (r.tag !== undefined) out.tag = r.tag
    if (r.digest !== undefined) out.digest = r.digest
    return out
  })
