import assert from 'node:assert/strict'
import { LOOP_HEALTH_INTERVAL_MS, LOOP_HEALTH_MAX_SCORE, LOOP_LATE_MS } from '../src/constants.ts'
import { LoopHealth } from '../src/loop-health.ts'
import { MemberTable } from '../src/member-table.ts'
import { VirtualClock } from '../src/virtual-clock.ts'

const record = (id: string, incarnation = 1) => ({
  id,
  kad: new Uint8Array(32).fill(id.charCodeAt(0)),
  incarnation,
  state: 'alive' as const,
  addresses: []
})

describe('local health', () => {
  it('rises by one for each late interval, up to its highest score, and falls by one for each other', () => {
    const health = new LoopHealth()
    for (let i = 0; i < LOOP_HEALTH_MAX_SCORE + 3; i++) health.record(LOOP_LATE_MS)
    assert.equal(health.score, LOOP_HEALTH_MAX_SCORE)
    health.record(0)
    health.record(LOOP_LATE_MS - 1)
    assert.equal(health.score, LOOP_HEALTH_MAX_SCORE - 2)
  })

  it('counts an interval in which the event loop was blocked as late', async () => {
    const health = new LoopHealth()
    const release = health.use()
    try {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const until = Date.now() + LOOP_LATE_MS + 100
      while (Date.now() < until) {
        // a turn of the event loop that does not end: a process starved or blocked
      }
      await new Promise((resolve) => setTimeout(resolve, LOOP_HEALTH_INTERVAL_MS))
      assert.ok(health.score >= 1, `score ${health.score}`)
    } finally {
      release()
    }
    assert.equal(health.score, 0, 'stopped: healthy again')
  })

  it('gives a suspected member (1 + score) times the suspicion timeout to refute', () => {
    const clock = new VirtualClock()
    let score = 2
    const table = new MemberTable({
      self: record('s'),
      clock,
      suspectTimeoutMs: 1000,
      tombstoneMs: 60_000,
      healthScore: () => score
    })
    table.apply(record('m'))
    table.suspect('m')
    score = 0
    clock.advance(2999)
    assert.equal(table.get('m')?.state, 'suspect')
    clock.advance(1)
    assert.equal(table.get('m')?.state, 'dead')
  })
})
