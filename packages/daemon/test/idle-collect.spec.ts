import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { MirrorHandler } from '@kadmirror/mirror'
import { waitFor } from '@kadmirror/test-support'
import { IDLE_COLLECT_MIN_BYTES, IDLE_COLLECT_MIN_REQUESTS } from '../src/constants.ts'
import { collectAfterBursts } from '../src/idle-collect.ts'
import { fullGarbageCollection } from '../src/runtime.ts'

/** A stand-in for the mirror's events, and what it sends. */
function mirrorEvents() {
  const events = new EventEmitter()
  const mirror = { events } as unknown as Pick<MirrorHandler, 'events'>
  const blob = (bytes: number) => events.emit('response', { kind: 'blob', bytes })
  return { mirror, events, blob }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('collection after a burst of requests', () => {
  it('collects once when blobs stop being sent, not while they are', async () => {
    const { mirror, blob } = mirrorEvents()
    let collections = 0
    const collector = collectAfterBursts({ mirror, collect: () => collections++, afterMs: 300 })
    try {
      for (let i = 0; i < 5; i++) {
        blob(IDLE_COLLECT_MIN_BYTES)
        await sleep(50)
      }
      assert.equal(collections, 0)
      await waitFor(() => collections === 1, 5000, 'a collection after the burst')
      await sleep(400)
      assert.equal(collections, 1)
    } finally {
      collector.stop()
    }
  })

  it('collects again after a second burst', async () => {
    const { mirror, blob } = mirrorEvents()
    let collections = 0
    const collector = collectAfterBursts({ mirror, collect: () => collections++, afterMs: 20 })
    try {
      blob(IDLE_COLLECT_MIN_BYTES)
      await waitFor(() => collections === 1, 5000, 'a collection after the first burst')
      blob(IDLE_COLLECT_MIN_BYTES)
      await waitFor(() => collections === 2, 5000, 'a collection after the second burst')
    } finally {
      collector.stop()
    }
  })

  it('does not collect after a few small requests', async () => {
    const { mirror, events, blob } = mirrorEvents()
    let collections = 0
    const collector = collectAfterBursts({ mirror, collect: () => collections++, afterMs: 20 })
    try {
      blob(IDLE_COLLECT_MIN_BYTES - 1)
      for (let i = 2; i < IDLE_COLLECT_MIN_REQUESTS; i++)
        events.emit('response', { kind: 'manifest', bytes: 1000 })
      await sleep(200)
      assert.equal(collections, 0)
    } finally {
      collector.stop()
    }
  })

  it('collects after a burst of requests that sent no blob (misses)', async () => {
    const { mirror, blob } = mirrorEvents()
    let collections = 0
    const collector = collectAfterBursts({ mirror, collect: () => collections++, afterMs: 20 })
    try {
      for (let i = 0; i < IDLE_COLLECT_MIN_REQUESTS; i++) blob(0)
      await waitFor(() => collections === 1, 5000, 'a collection after the misses')
    } finally {
      collector.stop()
    }
  })

  it('collects once quiet after a burst it is told of (the node starting)', async () => {
    const { mirror } = mirrorEvents()
    let collections = 0
    const collector = collectAfterBursts({ mirror, collect: () => collections++, afterMs: 20 })
    try {
      collector.burst()
      await waitFor(() => collections === 1, 5000, 'a collection after the start')
    } finally {
      collector.stop()
    }
  })

  it('does not collect once stopped', async () => {
    const { mirror, events, blob } = mirrorEvents()
    let collections = 0
    const collector = collectAfterBursts({ mirror, collect: () => collections++, afterMs: 20 })
    blob(IDLE_COLLECT_MIN_BYTES)
    collector.stop()
    await sleep(200)
    assert.equal(collections, 0)
    assert.equal(events.listenerCount('response'), 0)
  })

  it('frees unreachable buffers with the full collection it runs', async () => {
    const gc = fullGarbageCollection()
    let garbage: Buffer[] | undefined = Array.from({ length: 16 }, () => Buffer.allocUnsafeSlow(1024 * 1024))
    const peak = process.memoryUsage().arrayBuffers
    garbage = undefined
    assert.equal(garbage, undefined)
    await sleep(10)
    gc()
    await waitFor(
      () => process.memoryUsage().arrayBuffers < peak - 12 * 1024 * 1024,
      5000,
      'the 16 MiB of buffers freed'
    )
  })
})
