import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  type DistributionPath,
  formatDistributionPath,
  InvalidPathError,
  parseDistributionPath,
  referenceOfPath
} from '../src/index.ts'
import { digest, registry, repository, tag } from './arbitraries.ts'

const DIGEST = `sha256:${'cd'.repeat(32)}`

describe('parseDistributionPath', () => {
  it('parses the API version check with and without a trailing slash', () => {
    assert.deepEqual(parseDistributionPath('/v2/'), { kind: 'base' })
    assert.deepEqual(parseDistributionPath('/v2'), { kind: 'base' })
  })

  it('parses a tag manifest path with containerd’s URL-encoded ns', () => {
    assert.deepEqual(parseDistributionPath('/v2/library/nginx/manifests/1.27?ns=127.0.0.1%3A5050'), {
      kind: 'manifest',
      repository: 'library/nginx',
      tag: '1.27',
      registry: '127.0.0.1:5050'
    })
  })

  it('parses a digest manifest path without ns', () => {
    assert.deepEqual(parseDistributionPath(`/v2/a/b/c/manifests/${DIGEST}`), {
      kind: 'manifest',
      repository: 'a/b/c',
      digest: DIGEST
    })
  })

  it('parses a blob path', () => {
    assert.deepEqual(parseDistributionPath(`/v2/pause/blobs/${DIGEST}?ns=registry.k8s.io`), {
      kind: 'blob',
      repository: 'pause',
      digest: DIGEST,
      registry: 'registry.k8s.io'
    })
  })

  it('accepts a repository that contains the word manifests', () => {
    const path = parseDistributionPath('/v2/x/manifests/y/manifests/latest')
    assert.equal(path.kind === 'manifest' && path.repository, 'x/manifests/y')
  })

  it('ignores an empty ns', () => {
    assert.deepEqual(parseDistributionPath('/v2/a/manifests/t?ns='), {
      kind: 'manifest',
      repository: 'a',
      tag: 't'
    })
  })

  for (const [target, code] of [
    ['/v2/../etc/passwd/blobs/x', 'NAME_INVALID'],
    [`/v2/a/../../blobs/${DIGEST}`, 'NAME_INVALID'],
    [`/v2/%2e%2e/blobs/${DIGEST}`, 'NAME_INVALID'],
    [`/v2/a%2Fb/blobs/${DIGEST}`, 'NAME_INVALID'],
    [`/v2/a//b/blobs/${DIGEST}`, 'NAME_INVALID'],
    [`/v2/A/blobs/${DIGEST}`, 'NAME_INVALID'],
    ['/v2/a/blobs/sha256:xyz', 'DIGEST_INVALID'],
    ['/v2/a/blobs/latest', 'DIGEST_INVALID'],
    ['/v2/a/manifests/-bad', 'MANIFEST_INVALID'],
    ['/v2/a/manifests/sha256:1', 'DIGEST_INVALID'],
    ['/v2/a/tags/list', 'UNSUPPORTED'],
    ['/v2/_catalog', 'UNSUPPORTED'],
    ['/v1/a/blobs/x', 'UNSUPPORTED'],
    ['/v2/a/blobs/uploads/', 'UNSUPPORTED'],
    ['/v2/a/manifests/t?ns=not a host', 'NAME_INVALID'],
    [`/v2/${'a/'.repeat(2100)}manifests/t`, 'NAME_INVALID']
  ] as const) {
    it(`rejects ${target.slice(0, 50)} with ${code}`, () => {
      assert.throws(
        () => parseDistributionPath(target),
        (err: unknown) => err instanceof InvalidPathError && err.code === code
      )
    })
  }

  it('round-trips every generated path through format and parse', () => {
    const path: fc.Arbitrary<DistributionPath> = fc.oneof(
      fc.record({ kind: fc.constant('blob' as const), repository, digest }, { noNullPrototype: true }),
      fc.record({ kind: fc.constant('manifest' as const), repository, tag }, { noNullPrototype: true }),
      fc.record({ kind: fc.constant('manifest' as const), repository, digest }, { noNullPrototype: true })
    )
    fc.assert(
      fc.property(path, fc.option(registry, { nil: undefined }), (p, ns) => {
        const withNs = ns === undefined || p.kind === 'base' ? p : { ...p, registry: ns }
        assert.deepEqual(parseDistributionPath(formatDistributionPath(withNs)), withNs)
      }),
      { numRuns: 500 }
    )
  })

  it('only ever throws InvalidPathError for arbitrary targets', () => {
    const target = fc.oneof(
      fc.string({ maxLength: 200 }).map((s) => `/v2/${s}`),
      fc.string({ maxLength: 200 }),
      fc
        .string({ unit: fc.constantFrom(...'/v2ab.%:?=&sh256mnifestblo'.split('')), maxLength: 80 })
        .map((s) => `/v2/${s}`)
    )
    fc.assert(
      fc.property(target, (t) => {
        try {
          parseDistributionPath(t)
        } catch (err) {
          assert.ok(err instanceof InvalidPathError, String(err))
        }
      }),
      { numRuns: 3000 }
    )
  })
})

describe('referenceOfPath', () => {
  it('names the image of a tag path with ns', () => {
    const path = parseDistributionPath('/v2/library/nginx/manifests/1.27?ns=docker.io')
    assert.deepEqual(path.kind === 'manifest' && referenceOfPath(path), {
      registry: 'docker.io',
      repository: 'library/nginx',
      tag: '1.27'
    })
  })

  it('is undefined without ns', () => {
    const path = parseDistributionPath('/v2/library/nginx/manifests/1.27')
    assert.equal(path.kind === 'manifest' && referenceOfPath(path), undefined)
  })
})
