// ContainerdStore behaviour beyond the conformance suite, against a real containerd: events, partial content,
// restarts, names that are not references, and read modes.
import assert from 'node:assert/strict'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { buildImage, type Digest, digestOf } from '@kadmirror/oci'
import type { StoreEvent } from '@kadmirror/store'
import { waitFor } from '@kadmirror/test-support'
import { type ContainerdStore, openContainerdStore } from '../src/index.ts'
import { type ContainerdProcess, containerdUnavailable, startContainerd } from './containerd-process.ts'

const why = containerdUnavailable()

async function keysOf(store: ContainerdStore): Promise<Set<string>> {
  const keys = new Set<string>()
  for await (const { key } of store.keys()) keys.add(key)
  return keys
}

/** Collects events until `done` says enough, or fails after `ms`. */
async function eventsUntil(
  store: ContainerdStore,
  done: (events: StoreEvent[]) => boolean,
  act: () => Promise<void>,
  ms = 10_000
): Promise<StoreEvent[]> {
  const controller = new AbortController()
  const seen: StoreEvent[] = []
  const timer = setTimeout(() => controller.abort(), ms)
  const reading = (async () => {
    for await (const event of store.subscribe({ signal: controller.signal })) {
      seen.push(event)
      if (done(seen)) break
    }
  })()
  await act()
  await reading
  clearTimeout(timer)
  if (!done(seen))
    throw new Error(`timed out after ${ms} ms; saw ${seen.map((e) => `${e.type} ${e.key.key}`).join(', ')}`)
  return seen
}

if (why !== undefined) {
  describe('ContainerdStore', () => {
    it(`is skipped: ${why}`, function () {
      console.log(`    skipped: ${why}`)
      this.skip()
    })
  })
} else {
  describe('ContainerdStore', function () {
    this.timeout(30_000)
    let containerd: ContainerdProcess
    let store: ContainerdStore | undefined
    let namespaces = 0
    let namespace: string

    before(async () => {
      containerd = await startContainerd()
    })

    after(async () => {
      await containerd?.stop()
    })

    beforeEach(() => {
      namespace = `store-${++namespaces}`
    })

    afterEach(async () => {
      await store?.close()
      store = undefined
    })

    const open = async (): Promise<ContainerdStore> => {
      store = await openContainerdStore({
        address: containerd.socket,
        namespace,
        contentDir: containerd.contentDir,
        eventDebounceMs: 10
      })
      return store
    }

    it('reads the content directory directly when it is readable', async () => {
      assert.equal((await open()).readMode, 'file')
    })

    it('answers a digest absent from the content directory without containerd (a miss while it is frozen)', async () => {
      const s = await open()
      containerd.freeze()
      // Thawed after 2 s in any case, so that a store that does ask containerd fails the bound instead of hanging.
      const thaw = setTimeout(() => containerd.thaw(), 2000)
      try {
        const started = Date.now()
        assert.equal(await s.stat(`sha256:${'b'.repeat(64)}` as Digest), undefined)
        assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`)
      } finally {
        clearTimeout(thaw)
        containerd.thaw()
      }
    })

    it('still asks containerd for a blob in the content directory (it may belong to another namespace)', async () => {
      const layer = Buffer.from('held by another namespace')
      const image = buildImage({ layers: [layer] })
      await containerd.importImage(`${namespace}-other`, 'example.com/team/other:v1', image)
      const digest = digestOf(layer)
      await access(join(containerd.contentDir, 'blobs', 'sha256', digest.slice(7)))
      const s = await open()
      assert.equal(await s.stat(digest), undefined)
    })

    it('reads through the content service when the content directory is not there', async () => {
      store = await openContainerdStore({
        address: containerd.socket,
        namespace,
        contentDir: join(containerd.dir, 'nowhere')
      })
      assert.equal(store.readMode, 'grpc')
    })

    it('fails to open with a clear message when containerd is not there', async () => {
      await assert.rejects(
        openContainerdStore({ address: join(containerd.dir, 'missing.sock'), connectTimeoutMs: 300 }),
        /cannot reach containerd at .*missing\.sock/
      )
    })

    it('advertises an image pulled after it opened, from containerd’s events', async () => {
      const s = await open()
      const image = buildImage({ layers: [Buffer.from('pulled later')] })
      const events = await eventsUntil(
        s,
        (seen) => seen.some((e) => e.key.key === 'example.com/team/late:v1'),
        () => containerd.importImage(namespace, 'example.com/team/late:v1', image)
      )
      assert.ok(events.some((e) => e.type === 'added' && e.key.key === image.root.digest))
    })

    it('withdraws an image’s keys when it is deleted', async () => {
      const s = await open()
      const image = buildImage({ layers: [Buffer.from('deleted soon')] })
      await containerd.importImage(namespace, 'example.com/team/gone:v1', image)
      await waitFor(async () => (await keysOf(s)).has('example.com/team/gone:v1'), 10_000, 'the import')
      const events = await eventsUntil(
        s,
        (seen) =>
          seen.some((e) => e.type === 'removed' && e.key.key === image.root.digest) &&
          seen.some((e) => e.type === 'removed' && e.key.key === 'example.com/team/gone:v1'),
        () => containerd.removeImage(namespace, 'example.com/team/gone:v1')
      )
      assert.ok(events.every((e) => e.type === 'removed'))
    })

    it('withdraws an image whose layer was deleted from the content store', async () => {
      const s = await open()
      const layer = Buffer.from('a layer someone deletes')
      const image = buildImage({ layers: [layer] })
      const layerDigest = [...image.blobs.entries()].find(([, b]) => b === layer)?.[0] as Digest
      await containerd.importImage(namespace, 'example.com/team/partial:v1', image)
      await waitFor(async () => (await keysOf(s)).has(layerDigest), 10_000, 'the import')
      await containerd.ctr(namespace, 'content', 'rm', layerDigest)
      await waitFor(async () => !(await keysOf(s)).has(image.root.digest), 10_000, 'the withdrawal')
      assert.equal((await keysOf(s)).has('example.com/team/partial:v1'), false)
    })

    it('does not advertise an image name that is only a digest, as the CRI plugin keeps', async () => {
      const s = await open()
      const image = buildImage({ layers: [Buffer.from('cri')] })
      await containerd.importImage(namespace, 'example.com/team/cri:v1', image)
      await containerd
        .ctr(namespace, 'images', 'tag', 'example.com/team/cri:v1', `sha256:${'a'.repeat(64)}`)
        .catch(() => {})
      await s.refresh()
      const keys = await keysOf(s)
      assert.ok(keys.has('example.com/team/cri:v1'))
      assert.ok(![...keys].some((k) => k.startsWith(`sha256:${'a'.repeat(64)}`)))
    })

    it('reconnects after containerd restarts and follows its events again', async () => {
      const s = await open()
      await waitFor(() => s.connected(), 10_000, 'the subscription')
      await containerd.restart()
      await waitFor(() => s.connected(), 15_000, 'the reconnection')
      const image = buildImage({ layers: [Buffer.from('after restart')] })
      await eventsUntil(
        s,
        (seen) => seen.some((e) => e.key.key === 'example.com/team/restart:v1'),
        () => containerd.importImage(namespace, 'example.com/team/restart:v1', image)
      )
    })

    it('lists again after a restart, so what changed meanwhile is not missed', async () => {
      const s = await open()
      const image = buildImage({ layers: [Buffer.from('kept across restart')] })
      await containerd.importImage(namespace, 'example.com/team/kept:v1', image)
      await waitFor(async () => (await keysOf(s)).has('example.com/team/kept:v1'), 10_000, 'the import')
      await containerd.restart()
      await waitFor(() => s.connected(), 15_000, 'the reconnection')
      assert.ok((await keysOf(s)).has('example.com/team/kept:v1'))
    })
  })
}
