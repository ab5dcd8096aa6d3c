import assert from 'node:assert/strict'
import { RedialSchedule } from '../src/redials.ts'

/** A schedule on a clock the test moves, with 4 s first wait, 60 s longest, forgotten after 3 failures. */
function schedule() {
  let now = 1_000_000
  const redials = new RedialSchedule<string>({ baseMs: 4_000, maxMs: 60_000, maxFailures: 3, now: () => now })
  const due = (known: string[] = [], connected: string[] = [], dialling: string[] = []) =>
    redials.due(
      known.map((id) => [id, id] as const),
      (key) => connected.includes(key),
      (key) => dialling.includes(key)
    )
  return { redials, due, advance: (ms: number) => (now += ms) }
}

describe('RedialSchedule', () => {
  it('dials a peer of the peer store that is not connected at once', () => {
    const { due } = schedule()
    assert.deepEqual(due(['a']).dial, [['a', 'a']])
  })

  it('dials a learnt peer whose dial was never started at the next round', () => {
    const { redials, due } = schedule()
    redials.unreached('b', 'b', false)
    assert.deepEqual(due().dial, [['b', 'b']])
  })

  it('dials a learnt peer whose dial failed again once the first wait has passed', () => {
    const { redials, due, advance } = schedule()
    redials.unreached('b', 'b', true)
    assert.deepEqual(due().dial, [])
    advance(4_000)
    assert.deepEqual(due().dial, [['b', 'b']])
  })

  it('doubles the wait after each failed redial, up to the longest wait', () => {
    let now = 0
    const redials = new RedialSchedule<string>({
      baseMs: 4_000,
      maxMs: 10_000,
      maxFailures: 10,
      now: () => now
    })
    redials.unreached('c', 'c', true)
    const waits: number[] = []
    for (let i = 0; i < 4; i++) {
      const from = now
      while (
        redials.due(
          [],
          () => false,
          () => false
        ).dial.length === 0
      )
        now += 1_000
      waits.push(now - from)
      redials.failed('c')
    }
    assert.deepEqual(waits, [4_000, 8_000, 10_000, 10_000])
  })

  it('forgets a peer after its last allowed failure and says so', () => {
    const { redials, due, advance } = schedule()
    redials.unreached('d', 'd', true)
    advance(4_000)
    redials.failed('d')
    advance(8_000)
    redials.failed('d')
    advance(60_000)
    const { dial, forget } = due()
    assert.deepEqual(dial, [])
    assert.deepEqual(forget, ['d'])
    assert.equal(redials.pending, false)
  })

  it('drops a peer that got connected, and skips one being dialled', () => {
    const { redials, due } = schedule()
    redials.unreached('e', 'e', false)
    redials.unreached('f', 'f', false)
    assert.deepEqual(due([], ['e'], ['f']).dial, [])
    assert.deepEqual(due().dial, [['f', 'f']])
  })
})
