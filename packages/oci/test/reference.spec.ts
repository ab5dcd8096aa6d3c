import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  formatReference,
  InvalidReferenceError,
  isRegistryHost,
  parseReference,
  tagKey
} from '../src/index.ts'
import { reference } from './arbitraries.ts'

const DIGEST = `sha256:${'ab'.repeat(32)}`

describe('parseReference', () => {
  it('applies Docker defaults to a bare name', () => {
    assert.deepEqual(parseReference('nginx'), {
      registry: 'docker.io',
      repository: 'library/nginx',
      tag: 'latest'
    })
  })

  it('keeps a user namespace on docker.io without adding library/', () => {
    assert.deepEqual(parseReference('bitnami/redis:7'), {
      registry: 'docker.io',
      repository: 'bitnami/redis',
      tag: '7'
    })
  })

  it('maps index.docker.io to docker.io', () => {
    assert.equal(formatReference(parseReference('index.docker.io/nginx:1')), 'docker.io/library/nginx:1')
  })

  it('parses a registry with a dotted name and a tag', () => {
    assert.deepEqual(parseReference('registry.k8s.io/pause:3.10'), {
      registry: 'registry.k8s.io',
      repository: 'pause',
      tag: '3.10'
    })
  })

  it('parses a digest-only reference without inventing a tag', () => {
    assert.deepEqual(parseReference(`docker.io/library/nginx@${DIGEST}`), {
      registry: 'docker.io',
      repository: 'library/nginx',
      digest: DIGEST
    })
  })

  it('parses a registry with a port, a nested repository, a tag and a digest', () => {
    assert.deepEqual(parseReference(`localhost:5000/a/b:tag@${DIGEST}`), {
      registry: 'localhost:5000',
      repository: 'a/b',
      tag: 'tag',
      digest: DIGEST
    })
  })

  it('parses a bracketed IPv6 registry with a port', () => {
    assert.deepEqual(parseReference('[::1]:5000/x:y'), { registry: '[::1]:5000', repository: 'x', tag: 'y' })
  })

  it('treats localhost without a port as a registry', () => {
    assert.equal(parseReference('localhost/app:1').registry, 'localhost')
  })

  it('treats a single lowercase first component as part of the repository', () => {
    assert.deepEqual(parseReference('team/app:1'), {
      registry: 'docker.io',
      repository: 'team/app',
      tag: '1'
    })
  })

  it('rejects uppercase repositories', () => {
    assert.throws(() => parseReference('docker.io/Library/nginx'), InvalidReferenceError)
  })

  it('rejects a URL scheme', () => {
    assert.throws(() => parseReference('https://registry.k8s.io/pause:3.10'), InvalidReferenceError)
  })

  it('rejects a bad digest with DIGEST_INVALID', () => {
    assert.throws(
      () => parseReference('nginx@sha256:abc'),
      (err: unknown) => err instanceof InvalidReferenceError && err.code === 'DIGEST_INVALID'
    )
  })

  it('rejects an unbracketed IPv6 registry', () => {
    assert.throws(() => parseReference('::1:5000/x:y'), InvalidReferenceError)
  })

  it('rejects a tag longer than 128 characters', () => {
    assert.throws(() => parseReference(`nginx:${'a'.repeat(129)}`), InvalidReferenceError)
  })

  it('rejects a repository longer than 255 characters', () => {
    assert.throws(() => parseReference(`example.com/${'a/'.repeat(128)}b:1`), InvalidReferenceError)
  })

  it('without defaults, rejects a reference with no registry', () => {
    assert.throws(() => parseReference('nginx:1', { defaults: false }), InvalidReferenceError)
  })

  it('without defaults, rejects a reference with neither tag nor digest', () => {
    assert.throws(() => parseReference('example.com/nginx', { defaults: false }), InvalidReferenceError)
  })

  it('round-trips every canonical reference through format and parse', () => {
    fc.assert(
      fc.property(reference, (ref) => {
        assert.deepEqual(parseReference(formatReference(ref), { defaults: false }), ref)
      }),
      { numRuns: 500 }
    )
  })

  it('only ever throws InvalidReferenceError for arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (input) => {
        try {
          parseReference(input)
        } catch (err) {
          assert.ok(err instanceof InvalidReferenceError, String(err))
        }
      }),
      { numRuns: 2000 }
    )
  })

  it('is idempotent: formatting a parsed reference and parsing again gives the same reference', () => {
    const ascii = fc.string({ unit: fc.constantFrom(...'abc019.:/@-_[]ABsha256'.split('')), maxLength: 40 })
    fc.assert(
      fc.property(ascii, (input) => {
        let parsed: ReturnType<typeof parseReference>
        try {
          parsed = parseReference(input)
        } catch {
          return
        }
        assert.deepEqual(parseReference(formatReference(parsed)), parsed)
      }),
      { numRuns: 2000 }
    )
  })
})

describe('formatReference', () => {
  it('rejects a reference with neither tag nor digest', () => {
    assert.throws(() => formatReference({ registry: 'example.com', repository: 'a' }), InvalidReferenceError)
  })

  it('rejects a registry that is not a host', () => {
    assert.throws(
      () => formatReference({ registry: 'a/b', repository: 'a', tag: '1' }),
      InvalidReferenceError
    )
  })
})

describe('tagKey', () => {
  it('drops the digest, giving the key Spegel advertises for a tag', () => {
    assert.equal(tagKey(parseReference(`registry.k8s.io/pause:3.10@${DIGEST}`)), 'registry.k8s.io/pause:3.10')
  })

  it('is undefined for a digest-only reference', () => {
    assert.equal(tagKey(parseReference(`example.com/a@${DIGEST}`)), undefined)
  })
})

describe('isRegistryHost', () => {
  for (const host of [
    'docker.io',
    'localhost',
    'localhost:5000',
    '127.0.0.1:5000',
    '[::1]',
    '[::1]:5000',
    'my-registry.local'
  ]) {
    it(`accepts ${host}`, () => assert.equal(isRegistryHost(host), true))
  }
  for (const host of [
    '',
    'a/b',
    '[::1',
    '[::1]x',
    'host:port',
    '-bad.com',
    'a..b',
    '[zz::]:1',
    'h:123456',
    'h:65536'
  ]) {
    it(`rejects ${JSON.stringify(host)}`, () => assert.equal(isRegistryHost(host), false))
  }
})
