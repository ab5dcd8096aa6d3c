import assert from 'node:assert/strict'
import { buildImage } from '@kadmirror/oci'
import { ContentNotFoundError, type ContentStore, createMemoryStore, type StoreEvent } from '@kadmirror/store'
import { pino } from 'pino'
import { PendingStore } from '../src/pending-store.ts'

const image = buildImage({ layers: [new TextEncoder().encode('layer')] })

describe('PendingStore (a store that opens in the background)', function () {
  this.timeout(20_000)

  it('holds nothing until the real store opens: lookups miss, reads say not found', async () => {
    const pending = new PendingStore(
      () => new Promise<ContentStore>(() => {}),
      pino({ level: 'silent' }),
      'a store'
    )
    try {
      assert.equal(await pending.stat(image.root.digest), undefined)
      assert.equal(await pending.resolve('example.com/app:1'), undefined)
      await assert.rejects(pending.read(image.root.digest), ContentNotFoundError)
      const keys = []
      for await (const key of pending.keys()) keys.push(key)
      assert.deepEqual(keys, [])
    } finally {
      await pending.close()
    }
  })

  it('retries a failing open, logging each failure in one line, then serves the real store', async () => {
    const lines: string[] = []
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line).msg) })
    const real = createMemoryStore()
    await real.addImage('example.com/app:1', image)
    let attempts = 0
    const pending = new PendingStore(
      async () => {
        if (++attempts < 3) throw new Error('connect ENOENT /run/containerd/containerd.sock')
        return real
      },
      log,
      'the containerd store'
    )
    try {
      assert.equal(await pending.opened, real)
      assert.equal(attempts, 3)
      assert.equal(lines.length, 2)
      assert.match(
        lines[0] as string,
        /^cannot open the containerd store: connect ENOENT .*; the mirror answers 404 until it opens$/
      )
      assert.equal(await pending.resolve('example.com/app:1'), image.root.digest)
    } finally {
      await pending.close()
    }
  })

  it('tells a subscriber that came before it opened about every key it then holds', async () => {
    const real = createMemoryStore()
    await real.addImage('example.com/app:1', image)
    let release: (store: ContentStore) => void = () => {}
    const pending = new PendingStore(
      () => new Promise<ContentStore>((resolve) => (release = resolve)),
      pino({ level: 'silent' }),
      'a store'
    )
    const controller = new AbortController()
    const seen: StoreEvent[] = []
    const following = (async () => {
      for await (const event of pending.subscribe({ signal: controller.signal })) {
        seen.push(event)
        if (seen.length === 4) controller.abort()
      }
    })()
    await new Promise((resolve) => setTimeout(resolve, 50))
    release(real)
    await following
    // The tag, the manifest, the config and the layer.
    assert.ok(seen.every((e) => e.type === 'added'))
    assert.deepEqual(new Set(seen.map((e) => e.key.digest)).size, 3)
    assert.ok(seen.some((e) => e.key.key === 'example.com/app:1'))
    await pending.close()
  })

  it('closes the real store when it is closed, and one that opens after', async () => {
    let closed = 0
    const real = createMemoryStore()
    const closing = real.close.bind(real)
    real.close = async () => {
      closed++
      await closing()
    }
    let release: (store: ContentStore) => void = () => {}
    const pending = new PendingStore(
      () => new Promise<ContentStore>((resolve) => (release = resolve)),
      pino({ level: 'silent' }),
      'a store'
    )
    const closingPending = pending.close()
    release(real)
    await closingPending
    assert.equal(closed, 1)
  })
})
