import assert from 'node:assert/strict'
import { ProgressMeter } from '../src/progress.ts'

describe('progress meter', () => {
  function meter(minBytesPerSecond: number, windowMs: number) {
    const clock = { now: 0 }
    return { clock, meter: new ProgressMeter(minBytesPerSecond, windowMs, () => clock.now) }
  }

  it('judges nothing before a whole window of reading time has passed', () => {
    const { clock, meter: m } = meter(1000, 1000)
    clock.now = 999
    assert.equal(m.tooSlow(), false)
  })

  it('reports a peer that sent less than the bound over a window', () => {
    const { clock, meter: m } = meter(1000, 1000)
    m.add(999)
    clock.now = 1000
    assert.equal(m.tooSlow(), true)
  })

  it('starts a new window after a good one, so an early burst does not cover a later trickle', () => {
    const { clock, meter: m } = meter(1000, 1000)
    m.add(10_000)
    clock.now = 1000
    assert.equal(m.tooSlow(), false)
    m.add(1)
    clock.now = 2000
    assert.equal(m.tooSlow(), true)
  })

  it('does not count time paused for the client against the peer', () => {
    const { clock, meter: m } = meter(1000, 1000)
    m.add(600)
    clock.now = 500
    m.pause()
    clock.now = 60_000
    assert.equal(m.tooSlow(), false)
    m.resume()
    clock.now = 60_400
    assert.equal(m.tooSlow(), false)
  })

  it('never reports with a bound of zero', () => {
    const { clock, meter: m } = meter(0, 1000)
    clock.now = 1_000_000
    assert.equal(m.tooSlow(), false)
  })
})
