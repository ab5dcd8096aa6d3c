import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  createDigester,
  digestAlgorithm,
  digestHex,
  digestOf,
  InvalidDigestError,
  isDigest,
  parseDigest
} from '../src/index.ts'
import { digest } from './arbitraries.ts'

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

describe('digests', () => {
  it('computes the sha256 digest of empty content', () => {
    assert.equal(digestOf(new Uint8Array()), EMPTY_SHA256)
  })

  it('computes the same digest incrementally as in one go', () => {
    const digester = createDigester()
    digester.update(Buffer.from('hello '))
    digester.update(Buffer.from('world'))
    assert.equal(digester.bytes, 11)
    assert.equal(digester.digest(), digestOf('hello world'))
  })

  it('computes sha512 digests', () => {
    const d = digestOf('x', 'sha512')
    assert.equal(digestAlgorithm(d), 'sha512')
    assert.equal(digestHex(d).length, 128)
  })

  it('accepts a valid sha256 digest unchanged', () => {
    assert.equal(parseDigest(EMPTY_SHA256), EMPTY_SHA256)
  })

  for (const [input, why] of [
    ['', 'empty'],
    ['sha256', 'no colon'],
    ['md5:d41d8cd98f00b204e9800998ecf8427e', 'unknown algorithm'],
    [`sha256:${'A'.repeat(64)}`, 'uppercase hex'],
    [`sha256:${'a'.repeat(63)}`, 'short hex'],
    [`sha512:${'a'.repeat(64)}`, 'sha512 with sha256 length'],
    [`sha256:${'g'.repeat(64)}`, 'not hex'],
    [` ${EMPTY_SHA256}`, 'leading space']
  ] as const) {
    it(`rejects a digest with ${why}`, () => {
      assert.throws(
        () => parseDigest(input),
        (err: unknown) => err instanceof InvalidDigestError && err.code === 'DIGEST_INVALID'
      )
    })
  }

  it('accepts every generated digest', () => {
    fc.assert(fc.property(digest, (d) => assert.equal(parseDigest(d), d)))
  })

  it('only ever throws InvalidDigestError for arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (input) => {
        try {
          parseDigest(input)
          assert.ok(isDigest(input))
        } catch (err) {
          assert.ok(err instanceof InvalidDigestError)
        }
      }),
      { numRuns: 2000 }
    )
  })
})
