import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  formatContentRange,
  formatRange,
  InvalidRangeError,
  MultipleRangesError,
  parseRange,
  RangeNotSatisfiableError,
  type RangeSpec,
  resolveRange
} from '../src/index.ts'

describe('parseRange', () => {
  it('parses a closed range', () => assert.deepEqual(parseRange('bytes=0-99'), { start: 0, end: 99 }))
  it('parses an open range', () => assert.deepEqual(parseRange('bytes=100-'), { start: 100 }))
  it('parses a suffix range', () => assert.deepEqual(parseRange('bytes=-500'), { suffix: 500 }))
  it('accepts the unit in any case', () => assert.deepEqual(parseRange('Bytes=1-2'), { start: 1, end: 2 }))

  it('rejects several ranges with MultipleRangesError', () => {
    assert.throws(() => parseRange('bytes=0-1,5-9'), MultipleRangesError)
  })

  for (const input of [
    '',
    'bytes=',
    'bytes=-',
    'bytes=a-b',
    'items=0-1',
    'bytes=5-1',
    'bytes=0-1-2',
    'bytes=99999999999999999999-',
    'bytes=1.5-2'
  ]) {
    it(`rejects ${JSON.stringify(input)} with InvalidRangeError`, () => {
      assert.throws(
        () => parseRange(input),
        (err: unknown) => err instanceof InvalidRangeError && err.status === 416
      )
    })
  }

  it('round-trips every range through format and parse', () => {
    const spec: fc.Arbitrary<RangeSpec> = fc.oneof(
      fc.record({ suffix: fc.nat() }, { noNullPrototype: true }),
      fc.record({ start: fc.nat() }, { noNullPrototype: true }),
      fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => ({ start: Math.min(a, b), end: Math.max(a, b) }))
    )
    fc.assert(fc.property(spec, (s) => assert.deepEqual(parseRange(formatRange(s)), s)))
  })

  it('only ever throws InvalidRangeError for arbitrary headers', () => {
    const header = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.string({ unit: fc.constantFrom(...'bytes=-,0123456789 '.split('')), maxLength: 40 })
    )
    fc.assert(
      fc.property(header, (h) => {
        try {
          parseRange(h)
        } catch (err) {
          assert.ok(err instanceof InvalidRangeError, String(err))
        }
      }),
      { numRuns: 3000 }
    )
  })
})

describe('resolveRange', () => {
  it('clamps the end to the last byte', () =>
    assert.deepEqual(resolveRange({ start: 5, end: 1000 }, 10), { start: 5, end: 9 }))
  it('serves the last byte', () => assert.deepEqual(resolveRange({ start: 9 }, 10), { start: 9, end: 9 }))
  it('turns a suffix into offsets', () =>
    assert.deepEqual(resolveRange({ suffix: 3 }, 10), { start: 7, end: 9 }))
  it('serves a suffix longer than the content whole', () =>
    assert.deepEqual(resolveRange({ suffix: 30 }, 10), { start: 0, end: 9 }))
  it('refuses a start at the size', () =>
    assert.throws(() => resolveRange({ start: 10 }, 10), RangeNotSatisfiableError))
  it('refuses an empty suffix', () =>
    assert.throws(() => resolveRange({ suffix: 0 }, 10), RangeNotSatisfiableError))
  it('refuses any range of empty content', () =>
    assert.throws(() => resolveRange({ start: 0 }, 0), RangeNotSatisfiableError))

  it('always gives 0 ≤ start ≤ end < size when it succeeds', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ suffix: fc.nat(100) }),
          fc.record({ start: fc.nat(100), end: fc.option(fc.nat(100), { nil: undefined }) })
        ),
        fc.nat(100),
        (spec, size) => {
          if ('end' in spec && spec.end !== undefined && spec.end < spec.start) return
          const clean: RangeSpec =
            'suffix' in spec
              ? spec
              : spec.end === undefined
                ? { start: spec.start }
                : { start: spec.start, end: spec.end }
          try {
            const r = resolveRange(clean, size)
            assert.ok(r.start >= 0 && r.start <= r.end && r.end < size)
          } catch (err) {
            assert.ok(err instanceof RangeNotSatisfiableError)
          }
        }
      )
    )
  })

  it('formats Content-Range', () =>
    assert.equal(formatContentRange({ start: 0, end: 9 }, 10), 'bytes 0-9/10'))
})
