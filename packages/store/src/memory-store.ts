/**
 * `MemoryStore`: a ContentStore that holds images in memory, for tests and for embedding.
 */
import { Readable } from 'node:stream'
import {
  type BuiltImage,
  type ByteRange,
  type Descriptor,
  type Digest,
  parseDigest,
  parseReference,
  RangeNotSatisfiableError,
  tagKey
} from '@kadmirror/oci'
import { buildCatalog, type CatalogImage, LiveCatalog } from './catalog.ts'
import type {
  ContentInfo,
  ContentReader,
  ContentStore,
  StoreEvent,
  StoreKey,
  SubscribeOptions
} from './content-store.ts'
import { ContentNotFoundError, StoreClosedError } from './errors.ts'
import { createSerialQueue } from './serial.ts'

/** Size of the chunks a MemoryStore read yields, in bytes. */
const READ_CHUNK_BYTES = 64 * 1024

/** A ContentStore in memory, with methods to add and remove images. */
export interface MemoryStore extends ContentStore {
  /**
   * Adds an image's blobs and tags its root as `reference` (any form {@link parseReference} accepts; stored
   * canonical). Replaces an existing tag.
   * @throws {InvalidReferenceError} when the reference does not parse or has no tag.
   */
  addImage(reference: string, image: BuiltImage): Promise<void>
  /** Removes a tag; content no other image needs is dropped. Resolves false when the tag was not there. */
  removeImage(reference: string): Promise<boolean>
}

/** Creates an empty {@link MemoryStore}. */
export function createMemoryStore(): MemoryStore {
  const blobs = new Map<Digest, Uint8Array>()
  const images = new Map<string, CatalogImage>()
  const catalog = new LiveCatalog()
  let closed = false
  const serial = createSerialQueue()

  const has = async (digest: Digest): Promise<boolean> => blobs.has(digest)
  const check = (): void => {
    if (closed) throw new StoreClosedError()
  }
  const recatalog = (): Promise<StoreEvent[]> =>
    serial(async () => {
      const next = await buildCatalog(images.values(), { load: async (d) => blobs.get(d), has })
      return catalog.replace(next)
    })

  return {
    async *keys(): AsyncIterable<StoreKey> {
      check()
      yield* catalog.keys()
    },
    async resolve(reference) {
      check()
      return catalog.resolve(reference, has)
    },
    async stat(digest): Promise<ContentInfo | undefined> {
      check()
      const bytes = blobs.get(parseDigest(digest))
      if (bytes === undefined) return undefined
      return catalog.info(digest, bytes.byteLength)
    },
    async open(digest): Promise<ContentReader | undefined> {
      check()
      const bytes = blobs.get(parseDigest(digest))
      if (bytes === undefined) return undefined
      return {
        size: bytes.byteLength,
        async read(target, offset, length, position) {
          const part = bytes.subarray(position, Math.min(bytes.byteLength, position + length))
          target.set(part, offset)
          return part.byteLength
        },
        async close() {}
      }
    },
    async read(digest, range?: ByteRange) {
      check()
      const bytes = blobs.get(parseDigest(digest))
      if (bytes === undefined) throw new ContentNotFoundError(digest)
      const start = range?.start ?? 0
      const end = range === undefined ? bytes.byteLength - 1 : range.end
      if (range !== undefined && !(start >= 0 && start <= end && end < bytes.byteLength)) {
        throw new RangeNotSatisfiableError(bytes.byteLength)
      }
      return Readable.from(chunks(bytes, start, end + 1), { objectMode: false })
    },
    subscribe(options?: SubscribeOptions) {
      check()
      return catalog.subscribe(options)
    },
    async close() {
      closed = true
      catalog.close()
    },
    async addImage(reference, image) {
      check()
      const parsed = parseReference(reference)
      const key = tagKey(parsed)
      if (key === undefined) throw new TypeError(`reference ${reference} has no tag`)
      for (const [digest, bytes] of image.blobs) blobs.set(digest, bytes)
      const root: Descriptor = image.root
      images.set(key, { reference: key, registry: parsed.registry, name: key, root })
      await recatalog()
    },
    async removeImage(reference) {
      check()
      const key = tagKey(parseReference(reference))
      if (key === undefined || !images.delete(key)) return false
      for (const event of await recatalog()) {
        if (event.type === 'removed' && event.key.key === event.key.digest) blobs.delete(event.key.digest)
      }
      return true
    }
  }
}

function* chunks(bytes: Uint8Array, start: number, end: number): Generator<Buffer> {
  for (let offset = start; offset < end; offset += READ_CHUNK_BYTES) {
    yield Buffer.from(bytes.buffer, bytes.byteOffset + offset, Math.min(READ_CHUNK_BYTES, end - offset))
  }
}
