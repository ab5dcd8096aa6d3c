import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  InvalidValueError,
  parseBoolean,
  parseByteSize,
  parseDuration,
  parseHttpUrl,
  parseInteger,
  parseListenAddress,
  parseLogLevel,
  parseRegex,
  splitList
} from '../src/values.ts'

describe('flag values', () => {
  it('reads sizes in bytes and in KiB, MiB and GiB', () => {
    assert.equal(parseByteSize('8388608'), 8 * 1024 * 1024)
    assert.equal(parseByteSize('32MiB'), 32 * 1024 * 1024)
    assert.equal(parseByteSize('1GiB'), 1024 ** 3)
    assert.equal(parseByteSize('512B'), 512)
  })

  it('refuses sizes that are not a whole number with a binary unit, or too large', () => {
    for (const bad of ['', '-1', '1.5MiB', '32MB', '32 mib', 'MiB', '2GiB'])
      assert.throws(() => parseByteSize(bad, 1024 ** 3), InvalidValueError, bad)
  })

  it('reads back any size it is given in any unit (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 20 }),
        fc.constantFrom(['', 1], ['B', 1], ['KiB', 1024], ['MiB', 1024 ** 2]),
        (n, [unit, scale]) => {
          assert.equal(parseByteSize(`${n}${unit}`), n * (scale as number))
        }
      )
    )
    fc.assert(
      fc.property(fc.string(), (text) => {
        try {
          assert.ok(Number.isSafeInteger(parseByteSize(text)))
        } catch (err) {
          assert.ok(err instanceof InvalidValueError)
        }
      })
    )
  })

  it('reads Go durations in every unit and in sums', () => {
    assert.equal(parseDuration('20ms'), 20)
    assert.equal(parseDuration('2s'), 2000)
    assert.equal(parseDuration('1m30s'), 90_000)
    assert.equal(parseDuration('1.5h'), 5_400_000)
    assert.equal(parseDuration('500us'), 0.5)
    assert.equal(parseDuration('0'), 0)
  })

  it('reads any whole number of ms, s or m as that many', () => {
    fc.assert(
      fc.property(
        fc.nat(1_000_000),
        fc.constantFrom(['ms', 1], ['s', 1000], ['m', 60_000]),
        (n, [unit, ms]) => {
          assert.equal(parseDuration(`${n}${unit}`), n * (ms as number))
        }
      )
    )
  })

  it('refuses durations without a unit, with a unit Go lacks, or with garbage', () => {
    for (const bad of ['20', '5d', 'ms', '1s garbage', '', '-1s', '1m30'])
      assert.throws(() => parseDuration(bad), InvalidValueError, bad)
  })

  it('reads listen addresses with and without a host, IPv6 in brackets', () => {
    assert.deepEqual(parseListenAddress(':5000'), { host: '', port: 5000 })
    assert.deepEqual(parseListenAddress('0.0.0.0:5001'), { host: '0.0.0.0', port: 5001 })
    assert.deepEqual(parseListenAddress('[::1]:9090'), { host: '::1', port: 9090 })
    assert.deepEqual(parseListenAddress('localhost:0'), { host: 'localhost', port: 0 })
  })

  it('refuses a listen address with a port out of range or missing', () => {
    for (const bad of [':99999', '5000', ':', '::1:5000', 'host:port', ':-1'])
      assert.throws(() => parseListenAddress(bad), InvalidValueError, bad)
  })

  it('parses any port it is given back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), (port) =>
        assert.equal(parseListenAddress(`:${port}`).port, port)
      )
    )
  })

  it('reads booleans as Go does and refuses the rest', () => {
    assert.equal(parseBoolean('true'), true)
    assert.equal(parseBoolean('1'), true)
    assert.equal(parseBoolean('FALSE'), false)
    assert.throws(() => parseBoolean('yes'), InvalidValueError)
  })

  it('reads log levels in any case and refuses others', () => {
    assert.equal(parseLogLevel('debug'), 'DEBUG')
    assert.throws(() => parseLogLevel('TRACE'), InvalidValueError)
  })

  it('refuses whole numbers out of range, fractions and words', () => {
    assert.equal(parseInteger('3', 0, 10), 3)
    for (const bad of ['11', '-1', '1.5', 'three', ''])
      assert.throws(() => parseInteger(bad, 0, 10), InvalidValueError, bad)
  })

  it('refuses a regular expression that does not compile, naming it', () => {
    assert.throws(() => parseRegex('docker.io/(unclosed'), /is not a regular expression/)
    assert.equal(parseRegex('^docker\\.io/').test('docker.io/library'), true)
  })

  it('accepts only http and https URLs', () => {
    assert.equal(parseHttpUrl('https://bootstrap:8443/bootstrap-nodes').port, '8443')
    for (const bad of ['ftp://x', 'not a url', '/relative'])
      assert.throws(() => parseHttpUrl(bad), InvalidValueError, bad)
  })

  it('splits comma-separated lists, dropping empty items', () => {
    assert.deepEqual(splitList('a, b,,c '), ['a', 'b', 'c'])
    assert.deepEqual(splitList(''), [])
  })
})
