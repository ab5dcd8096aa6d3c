import assert from 'node:assert/strict'
import fc from 'fast-check'
import { LandedBytes, type Piece, PiecePlan } from '../src/piece-plan.ts'

describe('piece plan', () => {
  it('hands out pieces lowest first, the last one shorter', () => {
    const plan = new PiecePlan(25, 10)
    const claimed = [plan.claim('a'), plan.claim('b'), plan.claim('c'), plan.claim('d')]
    assert.deepEqual(
      claimed.map((p) => p && [p.start, p.end]),
      [[0, 10], [10, 20], [20, 25], undefined]
    )
  })

  it('gives a failed piece back from the byte reached, to be claimed first', () => {
    const plan = new PiecePlan(30, 10)
    const first = plan.claim('a') as Piece
    plan.claim('b')
    plan.received(first, 4)
    plan.giveBack(first)
    const again = plan.claim('c') as Piece
    assert.deepEqual([again.start, again.next, again.end, again.holder], [0, 4, 10, 'c'])
  })

  it('splits the back half of the piece with most bytes left for an idle holder', () => {
    const plan = new PiecePlan(20, 10, 2)
    const a = plan.claim('a') as Piece
    const b = plan.claim('b') as Piece
    plan.received(a, 8)
    plan.received(b, 2)
    const back = plan.split('c') as Piece
    assert.deepEqual([back.start, back.end, b.end], [16, 20, 16])
  })

  it('splits nothing when each part would be under the minimum', () => {
    const plan = new PiecePlan(10, 10, 4)
    const a = plan.claim('a') as Piece
    plan.received(a, 3)
    assert.equal(plan.split('b'), undefined)
  })

  it('refuses bytes past a piece end', () => {
    const plan = new PiecePlan(10, 10)
    const a = plan.claim('a') as Piece
    assert.throws(() => plan.received(a, 11), RangeError)
  })

  it('receives every byte exactly once whatever the holders do (property)', () => {
    const step = fc.record({
      who: fc.integer({ min: 0, max: 3 }),
      action: fc.constantFrom('take', 'bytes', 'fail', 'split'),
      bytes: fc.integer({ min: 1, max: 7 })
    })
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(step),
        (size, pieceBytes, steps) => {
          const plan = new PiecePlan(size, pieceBytes, 2)
          const held = new Map<number, Piece>()
          const got = new Uint8Array(size)
          const take = (who: number, piece: Piece) => held.set(who, piece)
          const receive = (who: number, piece: Piece, bytes: number) => {
            const n = Math.min(bytes, piece.end - piece.next)
            for (let i = piece.next; i < piece.next + n; i++) got[i] = (got[i] ?? 0) + 1
            plan.received(piece, n)
            if (piece.next === piece.end) held.delete(who)
          }
          for (const { who, action, bytes } of steps) {
            const piece = held.get(who)
            if (action === 'take' && piece === undefined) {
              const next = plan.claim(String(who)) ?? plan.split(String(who))
              if (next !== undefined) take(who, next)
            } else if (action === 'bytes' && piece !== undefined) receive(who, piece, bytes)
            else if (action === 'fail' && piece !== undefined) {
              plan.giveBack(piece)
              held.delete(who)
            } else if (action === 'split' && piece === undefined) {
              const back = plan.split(String(who))
              if (back !== undefined) take(who, back)
            }
          }
          // Whoever is left finishes; then the rest is claimed and received.
          for (const [who, piece] of held) receive(who, piece, size)
          held.clear()
          for (let piece = plan.claim('z'); piece !== undefined; piece = plan.claim('z'))
            receive(9, piece, size)
          assert.equal(plan.done, true)
          assert.equal(plan.remaining, 0)
          assert.ok(got.every((count) => count === 1))
        }
      )
    )
  })
})

describe('landed bytes', () => {
  it('has no prefix until byte 0 lands', () => {
    const landed = new LandedBytes()
    landed.add(5, 10)
    assert.equal(landed.prefixEnd, 0)
    landed.add(0, 5)
    assert.equal(landed.prefixEnd, 10)
  })

  it('reaches the end whatever order the ranges land in (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1 }),
        fc.integer(),
        (lengths, seed) => {
          const ranges: [number, number][] = []
          let at = 0
          for (const length of lengths) {
            ranges.push([at, at + length])
            at += length
          }
          const order = ranges.map((r, i) => ({ r, k: Math.sin(seed + i) })).sort((a, b) => a.k - b.k)
          const landed = new LandedBytes()
          let covered = 0
          for (const { r } of order) {
            landed.add(r[0], r[1])
            assert.ok(landed.prefixEnd >= covered)
            covered = landed.prefixEnd
          }
          assert.equal(landed.prefixEnd, at)
        }
      )
    )
  })
})
