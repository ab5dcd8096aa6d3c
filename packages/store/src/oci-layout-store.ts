/**
 * `OciLayoutStore`: the embedded default ContentStore, an OCI image-layout directory (`oci-layout`,
 * `index.json` with `org.opencontainers.image.ref.name` annotations, `blobs/<alg>/<hex>`). It watches
 * `index.json`, so images that other programs (skopeo, umoci, `ctr export`) add or remove become events.
 */
import { randomBytes } from 'node:crypto'
import { type FSWatcher, constants as fsConstants, watch } from 'node:fs'
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  writeFile
} from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import {
  type BuiltImage,
  type ByteRange,
  createDigester,
  type Descriptor,
  type Digest,
  digestAlgorithm,
  digestHex,
  type ImageIndex,
  OCI_INDEX,
  parseDigest,
  parseManifest,
  parseReference,
  RangeNotSatisfiableError,
  tagKey,
  walkImage
} from '@kadmirror/oci'
import { buildCatalog, type Catalog, type CatalogImage, imageName, LiveCatalog } from './catalog.ts'
import type { ContentInfo, ContentReader, ContentStore, StoreKey, SubscribeOptions } from './content-store.ts'
import {
  ContentMismatchError,
  ContentNotFoundError,
  IncompleteImageError,
  InvalidLayoutError,
  StoreClosedError
} from './errors.ts'
import { fileContentReader, fileContentStream, isMissingFile } from './files.ts'
import { createSerialQueue } from './serial.ts'

/** Annotation of the OCI image-layout spec naming an image in `index.json`. */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'
/** Annotation containerd writes with the full image name (`ctr export`); read first when present. */
export const CONTAINERD_NAME_ANNOTATION = 'io.containerd.image.name'
/** Largest manifest or index read, in bytes (as distribution's 4 MiB limit). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
/** How long the watcher waits for more changes before re-reading `index.json`, in ms. */
export const WATCH_DEBOUNCE_MS = 50

const TMP_DIR = '.tmp'
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW

/** Options of {@link openOciLayoutStore}. */
export interface OciLayoutStoreInit {
  /** The layout directory. */
  directory: string
  /** Create the directory, `oci-layout` and an empty `index.json` when missing. Default true. */
  create?: boolean
  /** Watch `index.json` for changes made by other programs. Default true. */
  watch?: boolean
  /** Called with errors met in the background (an `index.json` that stopped parsing, a watcher failure). */
  onError?: (error: Error) => void
}

/** What the bytes written by {@link OciLayoutStore.putBlob} must be. */
export interface ExpectedContent {
  /** Digest the bytes must hash to; its algorithm is used. */
  digest?: Digest
  /** Size the bytes must have. */
  size?: number
}

/** An OCI image-layout ContentStore, with methods to add and remove images. */
export interface OciLayoutStore extends ContentStore {
  /** The layout directory (real path). */
  readonly directory: string
  /**
   * Writes a blob, hashing it as it streams to a temporary file that is renamed into `blobs/` only when it
   * matches `expected`. Returns its digest and size.
   * @throws {ContentMismatchError} when the bytes do not match `expected`; nothing is kept.
   */
  putBlob(
    source: Uint8Array | AsyncIterable<Uint8Array>,
    expected?: ExpectedContent
  ): Promise<{ digest: Digest; size: number }>
  /**
   * Names `root` (a manifest or index already in the store, with everything it references) as `reference`
   * in `index.json`, replacing an image of the same tag.
   * @throws {IncompleteImageError} when content the image needs is missing.
   * @throws {InvalidReferenceError} when the reference does not parse or has no tag.
   */
  tagImage(reference: string, root: Descriptor): Promise<void>
  /** Writes every blob of `image`, then tags its root as `reference`. */
  addImage(reference: string, image: BuiltImage): Promise<void>
  /** Removes the image named `reference` from `index.json` (its blobs stay until {@link collectGarbage}). Resolves false when absent. */
  removeImage(reference: string): Promise<boolean>
  /** Deletes blobs that no image in `index.json` reaches. Resolves the digests deleted. */
  collectGarbage(): Promise<Digest[]>
  /** Re-reads `index.json` now and publishes what changed (what the watcher does). */
  refresh(): Promise<void>
}

/**
 * Opens (by default creating) an OCI image layout as a ContentStore.
 * @throws {InvalidLayoutError} when the directory is not a layout (and `create` is false), or `index.json` is invalid.
 */
export async function openOciLayoutStore(init: OciLayoutStoreInit): Promise<OciLayoutStore> {
  const create = init.create ?? true
  if (create) await mkdir(init.directory, { recursive: true })
  let directory: string
  try {
    directory = await realpath(init.directory)
  } catch (err) {
    throw new InvalidLayoutError(`layout directory ${init.directory} does not exist`, { cause: err })
  }
  await ensureLayout(directory, create)

  const serial = createSerialQueue()
  const onError = init.onError ?? (() => {})
  let closed = false
  let watcher: FSWatcher | undefined
  let debounce: NodeJS.Timeout | undefined

  const blobPath = (digest: Digest): string =>
    join(directory, 'blobs', digestAlgorithm(digest), digestHex(digest))
  const check = (): void => {
    if (closed) throw new StoreClosedError()
  }
  const has = async (digest: Digest): Promise<boolean> => {
    try {
      return (await lstat(blobPath(digest))).isFile()
    } catch (err) {
      if (isMissingFile(err)) return false
      throw err
    }
  }
  const openBlob = async (digest: Digest): Promise<FileHandle | undefined> => {
    try {
      const handle = await open(blobPath(digest), OPEN_FLAGS)
      if ((await handle.stat()).isFile()) return handle
      await handle.close()
      return undefined
    } catch (err) {
      if (isMissingFile(err)) return undefined
      throw err
    }
  }
  const load = async (digest: Digest): Promise<Uint8Array | undefined> => {
    const handle = await openBlob(digest)
    if (handle === undefined) return undefined
    try {
      const { size } = await handle.stat()
      if (size > MAX_MANIFEST_BYTES) return undefined
      return await handle.readFile()
    } finally {
      await handle.close()
    }
  }
  const readIndex = async (): Promise<ImageIndex> => {
    const path = join(directory, 'index.json')
    let bytes: Buffer
    try {
      bytes = await readFile(path)
    } catch (err) {
      throw new InvalidLayoutError(`cannot read ${path}`, { cause: err })
    }
    try {
      return parseManifest(bytes, OCI_INDEX) as ImageIndex
    } catch (err) {
      throw new InvalidLayoutError(`${path} is not a valid image index: ${(err as Error).message}`, {
        cause: err
      })
    }
  }
  const writeIndex = async (index: ImageIndex): Promise<void> => {
    const tmp = await tmpFile(directory)
    await writeFile(tmp, `${JSON.stringify(index, null, 2)}\n`, { mode: 0o644 })
    await rename(tmp, join(directory, 'index.json'))
  }
  const catalogOf = (index: ImageIndex): Promise<Catalog> =>
    buildCatalog(index.manifests.map(toCatalogImage), {
      load,
      has,
      onInvalid: (digest, error) =>
        onError(new InvalidLayoutError(`manifest ${digest} is invalid: ${error.message}`))
    })

  const catalog = new LiveCatalog(await catalogOf(await readIndex()))

  /** Re-reads index.json; must run inside `serial`. */
  const reload = async (): Promise<void> => {
    catalog.replace(await catalogOf(await readIndex()))
  }
  const refresh = (): Promise<void> => serial(reload)

  if (init.watch ?? true) {
    watcher = watch(directory, { persistent: false }, (_event, filename) => {
      if (filename !== null && filename !== 'index.json') return
      clearTimeout(debounce)
      debounce = setTimeout(() => {
        if (!closed) refresh().catch(onError)
      }, WATCH_DEBOUNCE_MS)
    })
    watcher.on('error', onError)
  }

  const putBlob = async (source: Uint8Array | AsyncIterable<Uint8Array>, expected: ExpectedContent = {}) => {
    check()
    if (expected.digest !== undefined) parseDigest(expected.digest)
    const algorithm = expected.digest === undefined ? 'sha256' : digestAlgorithm(expected.digest)
    const digester = createDigester(algorithm)
    const tmp = await tmpFile(directory)
    const handle = await open(tmp, 'wx', 0o644)
    let kept = false
    try {
      const chunks = source instanceof Uint8Array ? [source] : source
      for await (const chunk of chunks) {
        digester.update(chunk)
        if (expected.size !== undefined && digester.bytes > expected.size) {
          throw new ContentMismatchError(String(expected.size), `more than ${expected.size} bytes`, 'size')
        }
        await handle.write(chunk)
      }
      await handle.sync()
      await handle.close()
      const digest = digester.digest()
      if (expected.size !== undefined && digester.bytes !== expected.size) {
        throw new ContentMismatchError(String(expected.size), String(digester.bytes), 'size')
      }
      if (expected.digest !== undefined && digest !== expected.digest)
        throw new ContentMismatchError(expected.digest, digest)
      await mkdir(join(directory, 'blobs', algorithm), { recursive: true })
      await rename(tmp, blobPath(digest))
      kept = true
      return { digest, size: digester.bytes }
    } finally {
      await handle.close().catch(() => {})
      if (!kept) await rm(tmp, { force: true })
    }
  }

  const tagImage = async (reference: string, root: Descriptor): Promise<void> => {
    check()
    const parsed = parseReference(reference)
    const key = tagKey(parsed)
    if (key === undefined) throw new TypeError(`reference ${reference} has no tag`)
    const probe = await buildCatalog([{ reference: key, registry: parsed.registry, root }], { load, has })
    if (!probe.keys.has(key)) throw new IncompleteImageError(root.digest)
    await serial(async () => {
      const index = await readIndex()
      const descriptor: Descriptor = {
        mediaType: root.mediaType,
        digest: root.digest,
        size: root.size,
        annotations: { [REF_NAME_ANNOTATION]: key, [CONTAINERD_NAME_ANNOTATION]: key }
      }
      if (root.platform !== undefined) descriptor.platform = root.platform
      index.manifests = [...index.manifests.filter((d) => toCatalogImage(d).reference !== key), descriptor]
      await writeIndex(index)
      await reload()
    })
  }

  const store: OciLayoutStore = {
    directory,
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
      try {
        const info = await lstat(blobPath(parseDigest(digest)))
        if (!info.isFile()) return undefined
        return catalog.info(digest, info.size)
      } catch (err) {
        if (isMissingFile(err)) return undefined
        throw err
      }
    },
    async read(digest, range?: ByteRange): Promise<Readable> {
      check()
      const handle = await openBlob(parseDigest(digest))
      if (handle === undefined) throw new ContentNotFoundError(digest)
      const { size } = await handle.stat()
      if (range !== undefined && !(range.start >= 0 && range.start <= range.end && range.end < size)) {
        await handle.close()
        throw new RangeNotSatisfiableError(size)
      }
      return fileContentStream(handle, size, range)
    },
    async open(digest): Promise<ContentReader | undefined> {
      check()
      const handle = await openBlob(parseDigest(digest))
      return handle === undefined ? undefined : fileContentReader(handle)
    },
    subscribe(options?: SubscribeOptions) {
      check()
      return catalog.subscribe(options)
    },
    async close() {
      if (closed) return
      closed = true
      clearTimeout(debounce)
      watcher?.close()
      catalog.close()
      await serial(async () => {})
    },
    putBlob,
    tagImage,
    async addImage(reference, image) {
      check()
      for (const [digest, bytes] of image.blobs) await putBlob(bytes, { digest, size: bytes.byteLength })
      await tagImage(reference, image.root)
    },
    async removeImage(reference) {
      check()
      const key = tagKey(parseReference(reference))
      return serial(async () => {
        const index = await readIndex()
        const kept = index.manifests.filter((d) => toCatalogImage(d).reference !== key)
        if (kept.length === index.manifests.length) return false
        index.manifests = kept
        await writeIndex(index)
        await reload()
        return true
      })
    },
    async collectGarbage() {
      check()
      return serial(async () => {
        const index = await readIndex()
        const reachable = new Set<Digest>()
        for (const root of index.manifests) {
          for await (const entry of walkImage(root, (d) => load(d.digest)))
            reachable.add(entry.descriptor.digest)
        }
        const deleted: Digest[] = []
        for (const algorithm of ['sha256', 'sha512'] as const) {
          let names: string[]
          try {
            names = await readdir(join(directory, 'blobs', algorithm))
          } catch (err) {
            if (isMissingFile(err)) continue
            throw err
          }
          for (const name of names) {
            const digest = `${algorithm}:${name}`
            if (reachable.has(digest as Digest)) continue
            await rm(join(directory, 'blobs', algorithm, name), { force: true })
            deleted.push(digest as Digest)
          }
        }
        await reload()
        return deleted
      })
    },
    refresh() {
      check()
      return refresh()
    }
  }
  return store
}

/** The catalog entry of an `index.json` descriptor: its full name from containerd's or the OCI annotation. */
function toCatalogImage(descriptor: Descriptor): CatalogImage {
  const annotations = descriptor.annotations ?? {}
  let name = imageName(annotations[CONTAINERD_NAME_ANNOTATION])
  if (name.reference === undefined) name = imageName(annotations[REF_NAME_ANNOTATION])
  return { ...name, root: descriptor }
}

/** Checks (or, with `create`, writes) `oci-layout` and `index.json`, and that `blobs/` is a real directory. */
async function ensureLayout(directory: string, create: boolean): Promise<void> {
  const layoutFile = join(directory, 'oci-layout')
  let layout: string | undefined
  try {
    layout = await readFile(layoutFile, 'utf8')
  } catch (err) {
    if (!isMissingFile(err)) throw err
  }
  if (layout === undefined) {
    if (!create) throw new InvalidLayoutError(`${directory} is not an OCI image layout: no oci-layout file`)
    await writeFile(layoutFile, `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`)
  } else {
    let version: unknown
    try {
      version = (JSON.parse(layout) as { imageLayoutVersion?: unknown }).imageLayoutVersion
    } catch {
      version = undefined
    }
    if (version !== '1.0.0') throw new InvalidLayoutError(`${layoutFile}: imageLayoutVersion must be "1.0.0"`)
  }
  const indexFile = join(directory, 'index.json')
  try {
    await lstat(indexFile)
  } catch (err) {
    if (!isMissingFile(err) || !create)
      throw new InvalidLayoutError(`${directory} has no index.json`, { cause: err })
    await writeFile(
      indexFile,
      `${JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }, null, 2)}\n`
    )
  }
  await mkdir(join(directory, 'blobs', 'sha256'), { recursive: true })
  for (const dir of [join(directory, 'blobs'), join(directory, 'blobs', 'sha256')]) {
    if (!(await lstat(dir)).isDirectory())
      throw new InvalidLayoutError(`${dir} must be a directory inside the layout, not a link`)
  }
}

/** A fresh temporary path inside the layout's `.tmp/` (same file system, so renames are atomic). */
async function tmpFile(directory: string): Promise<string> {
  await mkdir(join(directory, TMP_DIR), { recursive: true })
  return join(directory, TMP_DIR, randomBytes(8).toString('hex'))
}
