import assert from 'node:assert/strict'
import { BufferPool, COPY_BUFFER_BYTES } from '../src/copy.ts'

describe('copy buffer pool', () => {
  it('gives no buffer once its budget is in use', () => {
    const pool = new BufferPool(2 * COPY_BUFFER_BYTES)
    assert.ok(pool.take() !== undefined)
    assert.ok(pool.take() !== undefined)
    assert.equal(pool.take(), undefined)
  })

  it('gives a returned buffer again', () => {
    const pool = new BufferPool(COPY_BUFFER_BYTES)
    const buffer = pool.take() as Buffer
    pool.give(buffer)
    assert.equal(pool.take(), buffer)
  })

  it('is roomy only while less than half of its budget is in use', () => {
    const pool = new BufferPool(4 * COPY_BUFFER_BYTES)
    pool.take()
    assert.equal(pool.roomy, true)
    pool.take()
    assert.equal(pool.roomy, false)
  })

  it('keeps only a few free buffers after a burst, leaving the rest to the garbage collector', () => {
    const pool = new BufferPool(64 * COPY_BUFFER_BYTES)
    const taken = Array.from({ length: 64 }, () => pool.take() as Buffer)
    for (const buffer of taken) pool.give(buffer)
    assert.ok(pool.allocated <= 8, `${pool.allocated} buffers kept`)
  })
})
