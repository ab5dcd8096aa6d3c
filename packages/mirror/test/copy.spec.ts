import assert from 'node:assert/strict'
import { waitFor } from '@kadmirror/test-support'
import { BufferPool, COPY_BUFFER_BYTES } from '../src/copy.ts'
import { FreeBuffers } from '../src/free-buffers.ts'

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

describe('free buffers of the data path', () => {
  it('lets its free buffers go once it has been idle, and allocates again after', async () => {
    const pool = new BufferPool(8 * COPY_BUFFER_BYTES, 20)
    const taken = Array.from({ length: 3 }, () => pool.take() as Buffer)
    for (const buffer of taken) pool.give(buffer)
    assert.equal(pool.allocated, 3)
    await waitFor(() => pool.allocated === 0, 5000, 'the free buffers let go')
    const again = pool.take()
    assert.ok(again !== undefined && !taken.includes(again))
    assert.equal(pool.allocated, 1)
  })

  it('keeps its buffers while they are taken and given back more often than its idle time', async () => {
    const free = new FreeBuffers(2, () => {}, 1000)
    const buffer = Buffer.alloc(1)
    free.give(buffer)
    for (let i = 0; i < 6; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250))
      assert.equal(free.take(), buffer)
      free.give(buffer)
    }
    assert.equal(free.size, 1)
    free.release()
  })

  it('tells how many buffers it dropped when it empties itself', () => {
    const dropped: number[] = []
    const free = new FreeBuffers(4, (count) => dropped.push(count))
    free.give(Buffer.alloc(1))
    free.give(Buffer.alloc(1))
    free.release()
    assert.deepEqual(dropped, [2])
    assert.equal(free.size, 0)
    free.release()
    assert.deepEqual(dropped, [2])
  })

  it('refuses a buffer beyond the number it keeps', () => {
    const free = new FreeBuffers(1)
    assert.equal(free.give(Buffer.alloc(1)), true)
    assert.equal(free.give(Buffer.alloc(1)), false)
    free.release()
  })
})
