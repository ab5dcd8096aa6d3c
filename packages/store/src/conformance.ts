/**
 * The ContentStore conformance suite: behaviour every implementation must have, as mocha tests.
 * Call {@link contentStoreConformance} inside a test file; it registers a `describe` block.
 *
 * @example
 * ```ts
 * import { contentStoreConformance } from '@kadmirror/store/conformance'
 * import { createMemoryStore } from '@kadmirror/store'
 *
 * contentStoreConformance('MemoryStore', {
 *   async setup() {
 *     const store = createMemoryStore()
 *     return { store, addImage: store.addImage, removeImage: async (r) => { await store.removeImage(r) } }
 *   },
 *   async teardown() {}
 * })
 * ```
 */
import assert from 'node:assert/strict'
import type { Readable } from 'node:stream'
import {
  type BuiltImage,
  buildImage,
  buildIndex,
  type Digest,
  digestOf,
  RangeNotSatisfiableError
} from '@kadmirror/oci'
import type { ContentStore, StoreEvent } from './content-store.ts'
import { ContentNotFoundError, StoreClosedError } from './errors.ts'

/** A store under test and how to change what it holds. */
export interface ConformanceHarness {
  store: ContentStore
  /** Puts every blob of `image` into the store and tags its root as `reference`. */
  addImage(reference: string, image: BuiltImage): Promise<void>
  /** Removes the tag `reference` (content only it needed may go). */
  removeImage(reference: string): Promise<void>
}

/** How the suite makes and disposes of a fresh store for each test. */
export interface ConformanceOptions {
  setup(): Promise<ConformanceHarness>
  teardown(harness: ConformanceHarness): Promise<void>
  /** Longest wait for an event after a change, in ms. Default 5000. */
  eventTimeoutMs?: number
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const MISSING = digestOf('kadmirror conformance: content no store holds')

/** Reads a stream to the end. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array))
  return Buffer.concat(chunks)
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterable) out.push(item)
  return out
}

/** Collects events from `iterator` until `done(events)` holds or the timeout passes. */
async function eventsUntil(
  iterator: AsyncIterator<StoreEvent>,
  done: (events: StoreEvent[]) => boolean,
  timeoutMs: number
): Promise<StoreEvent[]> {
  const events: StoreEvent[] = []
  const deadline = Date.now() + timeoutMs
  while (!done(events)) {
    const remaining = deadline - Date.now()
    if (remaining <= 0) break
    let timer: NodeJS.Timeout | undefined
    const next = await Promise.race([
      iterator.next(),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), remaining)
      })
    ])
    clearTimeout(timer)
    if (next === 'timeout' || next.done === true) break
    events.push(next.value)
  }
  return events
}

/** A small two-layer image; `seed` makes its content unique. */
export function sampleImage(seed: string, layers = 2): BuiltImage {
  return buildImage({
    layers: Array.from({ length: layers }, (_, i) => bytes(`${seed} layer ${i} `.repeat(100 + i)))
  })
}

/** Registers the conformance tests of a ContentStore implementation named `name`. */
export function contentStoreConformance(name: string, options: ConformanceOptions): void {
  const timeoutMs = options.eventTimeoutMs ?? 5000

  describe(`ContentStore conformance: ${name}`, () => {
    let harness: ConformanceHarness
    let store: ContentStore

    beforeEach(async () => {
      harness = await options.setup()
      store = harness.store
    })

    afterEach(async () => {
      await options.teardown(harness)
    })

    describe('missing content', () => {
      it('stat resolves undefined for a digest the store lacks', async () => {
        assert.equal(await store.stat(MISSING), undefined)
      })

      it('read rejects with ContentNotFoundError for a digest the store lacks', async () => {
        await assert.rejects(store.read(MISSING), ContentNotFoundError)
      })

      it('resolve gives undefined for an unknown tag', async () => {
        assert.equal(await store.resolve('example.com/nothing/here:1'), undefined)
      })
    })

    describe('reading', () => {
      let image: BuiltImage
      let layer: Digest
      let layerBytes: Uint8Array

      beforeEach(async () => {
        image = sampleImage('read')
        await harness.addImage('example.com/conformance/read:1', image)
        const found = [...image.blobs].find(([digest]) => digest !== image.root.digest && digest.length > 0)
        layer = (found as [Digest, Uint8Array])[0]
        layerBytes = (found as [Digest, Uint8Array])[1]
      })

      it('open gives random access to every byte of a blob, when the store has open', async function () {
        if (store.open === undefined) return this.skip()
        const reader = await store.open(layer)
        assert.ok(reader !== undefined)
        try {
          assert.equal(reader.size, layerBytes.byteLength)
          const target = new Uint8Array(reader.size + 4)
          let position = 0
          while (position < reader.size) {
            const n = await reader.read(target, position + 4, Math.min(97, reader.size - position), position)
            assert.ok(n > 0)
            position += n
          }
          assert.deepEqual(Buffer.from(target.subarray(4)), Buffer.from(layerBytes))
          assert.equal(await reader.read(new Uint8Array(8), 0, 8, reader.size), 0)
        } finally {
          await reader.close()
          await reader.close()
        }
      })

      it('open resolves undefined for a digest the store lacks, when the store has open', async function () {
        if (store.open === undefined) return this.skip()
        assert.equal(await store.open(MISSING), undefined)
      })

      it('reads every blob of an image byte for byte', async () => {
        for (const [digest, expected] of image.blobs) {
          assert.deepEqual(await readAll(await store.read(digest)), Buffer.from(expected), digest)
        }
      })

      it('stats a blob with its size in bytes', async () => {
        const info = await store.stat(layer)
        assert.equal(info?.size, layerBytes.byteLength)
        assert.equal(info?.digest, layer)
      })

      it('stats a manifest with its media type', async () => {
        assert.equal((await store.stat(image.root.digest))?.mediaType, image.root.mediaType)
      })

      it('reads the first byte alone', async () => {
        assert.deepEqual(
          await readAll(await store.read(layer, { start: 0, end: 0 })),
          Buffer.from(layerBytes.subarray(0, 1))
        )
      })

      it('reads the last byte alone', async () => {
        const last = layerBytes.byteLength - 1
        assert.deepEqual(
          await readAll(await store.read(layer, { start: last, end: last })),
          Buffer.from(layerBytes.subarray(last))
        )
      })

      it('reads a range in the middle', async () => {
        assert.deepEqual(
          await readAll(await store.read(layer, { start: 10, end: 99 })),
          Buffer.from(layerBytes.subarray(10, 100))
        )
      })

      it('rejects a range that starts at the size with RangeNotSatisfiableError', async () => {
        const size = layerBytes.byteLength
        await assert.rejects(store.read(layer, { start: size, end: size }), RangeNotSatisfiableError)
      })

      it('rejects a range that ends past the last byte with RangeNotSatisfiableError', async () => {
        await assert.rejects(
          store.read(layer, { start: 0, end: layerBytes.byteLength }),
          RangeNotSatisfiableError
        )
      })

      it('rejects a range whose end is before its start', async () => {
        await assert.rejects(store.read(layer, { start: 5, end: 4 }), RangeNotSatisfiableError)
      })

      it('serves 32 concurrent reads of one blob, each complete and correct', async () => {
        const reads = await Promise.all(
          Array.from({ length: 32 }, async () => readAll(await store.read(layer)))
        )
        for (const read of reads) assert.deepEqual(read, Buffer.from(layerBytes))
      })

      it('reads an empty blob as an empty stream', async () => {
        const empty = buildImage({ layers: [new Uint8Array(0)] })
        await harness.addImage('example.com/conformance/empty:1', empty)
        const layerDigest = digestOf(new Uint8Array(0))
        assert.equal((await store.stat(layerDigest))?.size, 0)
        assert.equal((await readAll(await store.read(layerDigest))).length, 0)
      })
    })

    describe('keys and tags', () => {
      it('lists every digest of an image and its tag with the digest it points to', async () => {
        const image = sampleImage('keys')
        await harness.addImage('example.com/conformance/keys:v1', image)
        const keys = await collect(store.keys())
        const byKey = new Map(keys.map((k) => [k.key, k]))
        for (const digest of image.blobs.keys()) assert.equal(byKey.get(digest)?.digest, digest, digest)
        assert.equal(byKey.get('example.com/conformance/keys:v1')?.digest, image.root.digest)
        assert.equal(byKey.get('example.com/conformance/keys:v1')?.registry, 'example.com')
      })

      it('lists each key once', async () => {
        await harness.addImage('example.com/conformance/once:1', sampleImage('once'))
        const keys = (await collect(store.keys())).map((k) => k.key)
        assert.equal(new Set(keys).size, keys.length)
      })

      it('lists the child manifests of a multi-platform index', async () => {
        const amd = buildImage({ layers: [bytes('amd64')], platform: { architecture: 'amd64', os: 'linux' } })
        const arm = buildImage({ layers: [bytes('arm64')], platform: { architecture: 'arm64', os: 'linux' } })
        const index = buildIndex([amd, arm])
        await harness.addImage('example.com/conformance/multi:1', index)
        const keys = new Set((await collect(store.keys())).map((k) => k.key))
        for (const digest of index.blobs.keys()) assert.ok(keys.has(digest), digest)
        assert.equal((await store.stat(index.root.digest))?.mediaType, index.root.mediaType)
      })

      it('resolves a tag given with Docker defaults to its digest', async () => {
        const image = sampleImage('resolve')
        await harness.addImage('docker.io/library/conformance:1', image)
        assert.equal(await store.resolve('conformance:1'), image.root.digest)
        assert.equal(await store.resolve('docker.io/library/conformance:1'), image.root.digest)
      })

      it('resolves a reference with a digest it holds to that digest', async () => {
        const image = sampleImage('pinned')
        await harness.addImage('example.com/conformance/pinned:1', image)
        assert.equal(await store.resolve(`example.com/other@${image.root.digest}`), image.root.digest)
        assert.equal(await store.resolve(`example.com/other@${MISSING}`), undefined)
      })

      it('points a re-added tag at the new image', async () => {
        const first = sampleImage('first')
        const second = sampleImage('second')
        await harness.addImage('example.com/conformance/retag:1', first)
        await harness.addImage('example.com/conformance/retag:1', second)
        assert.equal(await store.resolve('example.com/conformance/retag:1'), second.root.digest)
      })
    })

    describe('events', () => {
      it('announces every key of an added image', async () => {
        const iterator = store.subscribe()[Symbol.asyncIterator]()
        const image = sampleImage('added')
        const expected = new Set([...image.blobs.keys(), 'example.com/conformance/added:1'])
        await harness.addImage('example.com/conformance/added:1', image)
        const events = await eventsUntil(
          iterator,
          (e) => e.filter((x) => x.type === 'added').length >= expected.size,
          timeoutMs
        )
        await iterator.return?.()
        assert.deepEqual(new Set(events.filter((e) => e.type === 'added').map((e) => e.key.key)), expected)
      })

      it('announces the removal of an image’s keys, but not of content another image still uses', async () => {
        const shared = bytes('shared layer '.repeat(50))
        const a = buildImage({ layers: [shared, bytes('only in a')] })
        const b = buildImage({ layers: [shared, bytes('only in b')] })
        await harness.addImage('example.com/conformance/a:1', a)
        await harness.addImage('example.com/conformance/b:1', b)
        const iterator = store.subscribe()[Symbol.asyncIterator]()
        await harness.removeImage('example.com/conformance/a:1')
        const onlyA = [...a.blobs.keys()].filter((d) => !b.blobs.has(d))
        const expected = new Set<string>([...onlyA, 'example.com/conformance/a:1'])
        const events = await eventsUntil(iterator, (e) => e.length >= expected.size, timeoutMs)
        // Wait briefly for any wrong extra event.
        events.push(...(await eventsUntil(iterator, () => false, 200)))
        await iterator.return?.()
        assert.deepEqual(
          new Set(events.map((e) => `${e.type} ${e.key.key}`)),
          new Set([...expected].map((k) => `removed ${k}`))
        )
        const keys = new Set((await collect(store.keys())).map((k) => k.key))
        assert.ok(keys.has(digestOf(shared)))
        assert.ok(!keys.has('example.com/conformance/a:1'))
      })

      it('gives every subscriber every event', async () => {
        const first = store.subscribe()[Symbol.asyncIterator]()
        const second = store.subscribe()[Symbol.asyncIterator]()
        await harness.addImage('example.com/conformance/fanout:1', sampleImage('fanout'))
        const one = await eventsUntil(
          first,
          (e) => e.some((x) => x.key.key === 'example.com/conformance/fanout:1'),
          timeoutMs
        )
        const two = await eventsUntil(
          second,
          (e) => e.some((x) => x.key.key === 'example.com/conformance/fanout:1'),
          timeoutMs
        )
        await first.return?.()
        await second.return?.()
        assert.ok(one.length > 0)
        assert.deepEqual(
          one.map((e) => e.key.key),
          two.map((e) => e.key.key)
        )
      })

      it('ends a subscription when its signal aborts', async () => {
        const controller = new AbortController()
        const iterator = store.subscribe({ signal: controller.signal })[Symbol.asyncIterator]()
        const next = iterator.next()
        controller.abort()
        assert.equal((await next).done, true)
      })
    })

    describe('close', () => {
      it('ends open subscriptions', async () => {
        const iterator = store.subscribe()[Symbol.asyncIterator]()
        const next = iterator.next()
        await store.close()
        assert.equal((await next).done, true)
      })

      it('rejects use after close with StoreClosedError', async () => {
        await store.close()
        await assert.rejects(store.stat(MISSING), StoreClosedError)
        await assert.rejects(store.read(MISSING), StoreClosedError)
        await assert.rejects(store.resolve('example.com/a:1'), StoreClosedError)
      })

      it('can be called twice', async () => {
        await store.close()
        await store.close()
      })
    })
  })
}
