import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildImage, digestHex, digestOf, InvalidDigestError, OCI_INDEX } from '@kadmirror/oci'
import { contentStoreConformance, readAll, sampleImage } from '../src/conformance.ts'
import {
  ContentMismatchError,
  ContentNotFoundError,
  IncompleteImageError,
  InvalidLayoutError,
  type OciLayoutStore,
  openOciLayoutStore
} from '../src/index.ts'

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'kadmirror-layout-'))
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterable) out.push(item)
  return out
}

const dirs = new Map<OciLayoutStore, string>()

contentStoreConformance('OciLayoutStore', {
  async setup() {
    const directory = await tempDir()
    const store = await openOciLayoutStore({ directory })
    dirs.set(store, directory)
    return {
      store,
      addImage: (reference, image) => store.addImage(reference, image),
      removeImage: async (reference) => {
        await store.removeImage(reference)
      }
    }
  },
  async teardown(harness) {
    await harness.store.close()
    const directory = dirs.get(harness.store as OciLayoutStore)
    if (directory !== undefined) await rm(directory, { recursive: true, force: true })
  }
})

describe('OciLayoutStore', () => {
  let directory: string
  let store: OciLayoutStore

  beforeEach(async () => {
    directory = await tempDir()
    store = await openOciLayoutStore({ directory })
  })

  afterEach(async () => {
    await store.close()
    await rm(directory, { recursive: true, force: true })
  })

  it('creates a valid empty layout', async () => {
    assert.deepEqual(JSON.parse(await readFile(join(directory, 'oci-layout'), 'utf8')), {
      imageLayoutVersion: '1.0.0'
    })
    assert.deepEqual(JSON.parse(await readFile(join(directory, 'index.json'), 'utf8')), {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: []
    })
  })

  it('names images in index.json with the OCI ref.name annotation', async () => {
    const image = sampleImage('named')
    await store.addImage('registry.k8s.io/pause:3.10', image)
    const index = JSON.parse(await readFile(join(directory, 'index.json'), 'utf8'))
    assert.equal(index.manifests[0].digest, image.root.digest)
    assert.equal(
      index.manifests[0].annotations['org.opencontainers.image.ref.name'],
      'registry.k8s.io/pause:3.10'
    )
  })

  it('keeps images across a reopen', async () => {
    const image = sampleImage('persist')
    await store.addImage('example.com/persist:1', image)
    await store.close()
    store = await openOciLayoutStore({ directory, create: false })
    assert.equal(await store.resolve('example.com/persist:1'), image.root.digest)
  })

  it('announces an image another program adds to index.json', async () => {
    const image = sampleImage('external')
    for (const [digest, bytes] of image.blobs) await store.putBlob(bytes, { digest })
    const iterator = store.subscribe()[Symbol.asyncIterator]()
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { ...image.root, annotations: { 'org.opencontainers.image.ref.name': 'example.com/ext:1' } }
      ]
    }
    await writeFile(join(directory, 'index.json'), JSON.stringify(index))
    const next = await iterator.next()
    await iterator.return?.()
    assert.equal(next.done, false)
    assert.equal(next.value?.type, 'added')
    assert.equal(await store.resolve('example.com/ext:1'), image.root.digest)
  })

  it('keeps serving the last good catalog when index.json stops parsing, and reports it', async () => {
    const image = sampleImage('good')
    await store.addImage('example.com/good:1', image)
    const errors: Error[] = []
    await store.close()
    store = await openOciLayoutStore({ directory, onError: (e) => errors.push(e) })
    await writeFile(join(directory, 'index.json'), '{ not json')
    await assert.rejects(store.refresh(), InvalidLayoutError)
    assert.equal(await store.resolve('example.com/good:1'), image.root.digest)
  })

  it('does not advertise an image name that is only a tag, but still advertises its content', async () => {
    const image = sampleImage('tagonly')
    for (const [digest, bytes] of image.blobs) await store.putBlob(bytes, { digest })
    const index = {
      schemaVersion: 2,
      manifests: [{ ...image.root, annotations: { 'org.opencontainers.image.ref.name': '3.10' } }]
    }
    await writeFile(join(directory, 'index.json'), JSON.stringify(index))
    await store.refresh()
    const keys = (await collect(store.keys())).map((k) => k.key)
    assert.deepEqual(new Set(keys), new Set(image.blobs.keys()))
  })

  it('does not advertise an image whose layer is missing', async () => {
    const image = sampleImage('partial')
    const [firstLayer] = image.blobs.keys()
    for (const [digest, bytes] of image.blobs)
      if (digest !== firstLayer) await store.putBlob(bytes, { digest })
    await assert.rejects(store.tagImage('example.com/partial:1', image.root), IncompleteImageError)
    const index = {
      schemaVersion: 2,
      manifests: [
        { ...image.root, annotations: { 'org.opencontainers.image.ref.name': 'example.com/partial:1' } }
      ]
    }
    await writeFile(join(directory, 'index.json'), JSON.stringify(index))
    await store.refresh()
    assert.deepEqual(await collect(store.keys()), [])
  })

  it('rejects a blob whose bytes do not match the expected digest, keeping nothing', async () => {
    const wrong = digestOf('something else')
    await assert.rejects(
      store.putBlob(new TextEncoder().encode('hello'), { digest: wrong }),
      ContentMismatchError
    )
    assert.equal(await store.stat(wrong), undefined)
    assert.equal(await store.stat(digestOf('hello')), undefined)
  })

  it('rejects a blob longer than the expected size while streaming', async () => {
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 1000; i++) yield new Uint8Array(1024)
    }
    await assert.rejects(store.putBlob(endless(), { size: 4096 }), ContentMismatchError)
  })

  it('writes a streamed blob and reads it back', async () => {
    async function* parts(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 10; i++) yield new Uint8Array(100_000).fill(i)
    }
    const { digest, size } = await store.putBlob(parts())
    assert.equal(size, 1_000_000)
    const bytes = await readAll(await store.read(digest))
    assert.equal(digestOf(bytes), digest)
  })

  it('refuses a blob file that is a symbolic link out of the layout', async () => {
    const outside = join(directory, '..', `outside-${digestHex(digestOf('x')).slice(0, 8)}`)
    await writeFile(outside, 'secret')
    const digest = digestOf('secret')
    try {
      await symlink(outside, join(directory, 'blobs', 'sha256', digestHex(digest)))
      assert.equal(await store.stat(digest), undefined)
      await assert.rejects(store.read(digest), ContentNotFoundError)
    } finally {
      await rm(outside, { force: true })
    }
  })

  it('rejects a malformed digest with InvalidDigestError', async () => {
    await assert.rejects(store.read('sha256:../../etc/passwd' as never), InvalidDigestError)
  })

  it('refuses to open a directory without oci-layout when not creating', async () => {
    const empty = await tempDir()
    try {
      await assert.rejects(openOciLayoutStore({ directory: empty, create: false }), InvalidLayoutError)
    } finally {
      await rm(empty, { recursive: true, force: true })
    }
  })

  it('refuses a layout with another imageLayoutVersion', async () => {
    const other = await tempDir()
    try {
      await writeFile(join(other, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}')
      await assert.rejects(openOciLayoutStore({ directory: other }), InvalidLayoutError)
    } finally {
      await rm(other, { recursive: true, force: true })
    }
  })

  it('collects blobs no image reaches, and keeps the rest', async () => {
    const kept = sampleImage('kept')
    const dropped = sampleImage('dropped')
    await store.addImage('example.com/kept:1', kept)
    await store.addImage('example.com/dropped:1', dropped)
    await store.removeImage('example.com/dropped:1')
    const deleted = await store.collectGarbage()
    assert.deepEqual(new Set(deleted), new Set([...dropped.blobs.keys()].filter((d) => !kept.blobs.has(d))))
    for (const digest of kept.blobs.keys()) assert.ok(await store.stat(digest))
  })

  it('reads a 3 MiB blob through a range that spans read chunks', async () => {
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251)
    const image = buildImage({ layers: [big] })
    await store.addImage('example.com/big:1', image)
    const layer = digestOf(big)
    const part = await readAll(await store.read(layer, { start: 1_000_000, end: 2_500_000 }))
    assert.deepEqual(part, Buffer.from(big.subarray(1_000_000, 2_500_001)))
  })
})
