/**
 * `openContainerdStore`: a ContentStore over a running containerd. Images come from the images service and
 * are walked through their indexes and manifests; content is read straight from containerd's content
 * directory when this process can read it (the faster way, measured in bench/containerd) and through the
 * content service otherwise. The events service drives updates; when containerd restarts the store
 * reconnects and lists again, so nothing is missed.
 */
import { constants } from 'node:fs'
import { access, open } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import {
  type ByteRange,
  type Digest,
  digestAlgorithm,
  digestHex,
  parseDigest,
  RangeNotSatisfiableError
} from '@kadmirror/oci'
import {
  buildCatalog,
  type CatalogImage,
  type ContentInfo,
  ContentNotFoundError,
  type ContentReader,
  type ContentStore,
  createSerialQueue,
  fileContentReader,
  fileContentStream,
  imageName,
  isMissingFile,
  LiveCatalog,
  MAX_MANIFEST_BYTES,
  StoreClosedError,
  type StoreEvent,
  type StoreKey,
  type SubscribeOptions
} from '@kadmirror/store'
import { type Logger, pino } from 'pino'
import { type ContainerdClient, createContainerdClient, isNotFound, type WireImage } from './client.ts'
import { sharedInfo } from './info-cache.ts'

/** containerd's default socket. */
export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock'
/** The namespace kubelet's images live in. */
export const DEFAULT_CONTAINERD_NAMESPACE = 'k8s.io'
/** containerd's default content directory (under its default root). */
export const DEFAULT_CONTENT_DIR = '/var/lib/containerd/io.containerd.content.v1.content'
/** The topics that change what the store holds. */
const EVENT_FILTERS = ['topic~="^/images/"', 'topic=="/content/delete"']

/** How content bytes are read. */
export type ContentReadMode = 'file' | 'grpc'

/** Options of {@link openContainerdStore}. Times are in milliseconds. */
export interface ContainerdStoreInit {
  /** containerd's gRPC socket. Default `/run/containerd/containerd.sock`. */
  address?: string
  /** containerd namespace. Default `k8s.io`. */
  namespace?: string
  /** containerd's content directory, read directly when readable. Default `/var/lib/containerd/io.containerd.content.v1.content`. */
  contentDir?: string
  /**
   * `auto` (default): the content directory when this process can read it, else the content service. `file`
   * or `grpc` force one.
   */
  read?: 'auto' | ContentReadMode
  /** Store events are gathered this long before the images are listed again. Default 50. */
  eventDebounceMs?: number
  /** Images are listed again this often even without events, as a safety net. Default 5 min. */
  resyncIntervalMs?: number
  /** How long the first connection may take before opening fails. Default 5000. */
  connectTimeoutMs?: number
  logger?: Logger
}

/** A ContentStore backed by containerd. */
export interface ContainerdStore extends ContentStore {
  /** How content bytes are read. */
  readonly readMode: ContentReadMode
  /** True while the event subscription is up. */
  connected(): boolean
  /** Lists the images again now; resolves with the changes. */
  refresh(): Promise<StoreEvent[]>
}

const silent = pino({ level: 'silent' })

/**
 * Connects to containerd and lists its images.
 * @throws when containerd cannot be reached within `connectTimeoutMs`, or `read: 'file'` is asked for and the
 * content directory is not readable.
 */
export async function openContainerdStore(init: ContainerdStoreInit = {}): Promise<ContainerdStore> {
  const log = init.logger ?? silent
  const namespace = init.namespace ?? DEFAULT_CONTAINERD_NAMESPACE
  const contentDir = init.contentDir ?? DEFAULT_CONTENT_DIR
  const client = createContainerdClient(init.address ?? DEFAULT_CONTAINERD_ADDRESS, namespace)
  const readMode = await chooseReadMode(init.read ?? 'auto', contentDir)
  try {
    await client.waitForReady(init.connectTimeoutMs ?? 5000)
  } catch (err) {
    client.close()
    throw new Error(
      `cannot reach containerd at ${init.address ?? DEFAULT_CONTAINERD_ADDRESS}: ${(err as Error).message}`
    )
  }

  const blobPath = (digest: Digest): string =>
    join(contentDir, 'blobs', digestAlgorithm(digest), digestHex(digest))
  const catalog = new LiveCatalog()
  const serial = createSerialQueue()
  let closed = false
  let subscribed = false
  const check = (): void => {
    if (closed) throw new StoreClosedError()
  }

  // What the namespace holds comes from containerd's metadata (the content directory is shared by every
  // namespace and keeps blobs until garbage collection); only the bytes are read from the directory. A blob that is
  // not in the directory is in no namespace (containerd commits the file before its metadata and collects the
  // metadata before the file), so a miss — the mirror's common case — is answered without a round trip to
  // containerd, and even while containerd is slow or stopped.
  const info = sharedInfo((digest) => client.info(digest))
  const size = async (digest: Digest): Promise<number | undefined> => {
    if (readMode === 'file' && !(await inDirectory(blobPath(digest)))) return undefined
    return info(digest)
  }
  const has = async (digest: Digest): Promise<boolean> => (await size(digest)) !== undefined
  const readWhole = async (digest: Digest): Promise<Uint8Array | undefined> => {
    const length = await size(digest)
    if (length === undefined || length > MAX_MANIFEST_BYTES) return undefined
    const chunks: Buffer[] = []
    try {
      for await (const chunk of await readRange(digest, { start: 0, end: length - 1 }, length))
        chunks.push(chunk as Buffer)
    } catch (err) {
      if (err instanceof ContentNotFoundError) return undefined
      throw err
    }
    return Buffer.concat(chunks)
  }
  const readRange = async (
    digest: Digest,
    range: ByteRange | undefined,
    length: number
  ): Promise<Readable> => {
    if (length === 0) return Readable.from([])
    if (readMode === 'file') {
      let handle: Awaited<ReturnType<typeof open>>
      try {
        handle = await open(blobPath(digest), constants.O_RDONLY | constants.O_NOFOLLOW)
      } catch (err) {
        if (isMissingFile(err)) throw new ContentNotFoundError(digest)
        throw err
      }
      return fileContentStream(handle, length, range)
    }
    const offset = range?.start ?? 0
    const count = range === undefined ? 0 : range.end - range.start + 1
    const source = client.read(digest, offset, count)
    return Readable.from(
      (async function* () {
        try {
          yield* source
        } catch (err) {
          if (isNotFound(err)) throw new ContentNotFoundError(digest)
          throw err
        }
      })()
    )
  }

  const reload = async (): Promise<StoreEvent[]> => {
    const [images, present] = await Promise.all([client.listImages(), client.listContent()])
    const next = await buildCatalog(images.flatMap(toCatalogImage), {
      load: readWhole,
      has: async (digest) => present.has(digest),
      onInvalid: (digest, err) =>
        log.warn({ digest, err: err.message }, 'invalid manifest in containerd; not advertised')
    })
    if (closed) return []
    return catalog.replace(next)
  }
  const refresh = (): Promise<StoreEvent[]> => serial(reload)

  let debounce: NodeJS.Timeout | undefined
  const scheduleRefresh = (): void => {
    if (closed || debounce !== undefined) return
    debounce = setTimeout(() => {
      debounce = undefined
      refresh().catch((err: unknown) => log.warn({ err }, 'listing containerd images failed'))
    }, init.eventDebounceMs ?? 50)
  }

  // Events, with reconnection: when the subscription drops (containerd restarted), wait for the socket, subscribe
  // again, and list again so whatever changed meanwhile is picked up.
  let stream: ReturnType<ContainerdClient['subscribe']> | undefined
  let wake: (() => void) | undefined
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  const follow = async (): Promise<void> => {
    let backoff = 100
    let first = true
    while (!closed) {
      try {
        await client.waitForReady(5000)
      } catch {
        await sleep(backoff)
        backoff = Math.min(backoff * 2, 5000)
        continue
      }
      if (closed) return
      const current = client.subscribe(EVENT_FILTERS)
      stream = current
      subscribed = true
      backoff = 100
      if (!first) {
        log.info({ namespace }, 'resubscribed to containerd events; listing images again')
        scheduleRefresh()
      }
      first = false
      const error = await new Promise<unknown>((resolve) => {
        current.on('data', (envelope: { namespace: string; topic: string }) => {
          if (envelope.namespace !== namespace) return
          log.debug({ topic: envelope.topic }, 'containerd event')
          scheduleRefresh()
        })
        current.on('error', resolve)
        current.on('end', () => resolve(new Error('the event stream ended')))
      })
      subscribed = false
      current.removeAllListeners()
      current.on('error', () => {})
      if (closed) return
      log.warn(
        { err: error instanceof Error ? error.message : error },
        'containerd event stream dropped; reconnecting'
      )
      await sleep(backoff)
    }
  }

  await refresh()
  const following = follow()
  const resync = setInterval(scheduleRefresh, init.resyncIntervalMs ?? 5 * 60 * 1000)
  resync.unref()

  return {
    readMode,
    connected: () => subscribed,
    refresh() {
      check()
      return refresh()
    },
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
      const length = await size(parseDigest(digest))
      return length === undefined ? undefined : catalog.info(digest, length)
    },
    async read(digest, range?: ByteRange) {
      check()
      const length = await size(parseDigest(digest))
      if (length === undefined) throw new ContentNotFoundError(digest)
      if (range !== undefined && !(range.start >= 0 && range.start <= range.end && range.end < length)) {
        throw new RangeNotSatisfiableError(length)
      }
      return readRange(digest, range, length)
    },
    async open(digest): Promise<ContentReader | undefined> {
      check()
      // Held by this namespace (metadata), whatever the shared content directory still has.
      const length = await size(parseDigest(digest))
      if (length === undefined) return undefined
      if (readMode === 'file') {
        try {
          return await fileContentReader(
            await open(blobPath(digest), constants.O_RDONLY | constants.O_NOFOLLOW)
          )
        } catch (err) {
          if (isMissingFile(err)) return undefined
          throw err
        }
      }
      return {
        size: length,
        async read(target, offset, count, position) {
          if (position >= length) return 0
          let written = 0
          for await (const chunk of client.read(digest, position, Math.min(count, length - position))) {
            target.set(chunk, offset + written)
            written += chunk.byteLength
          }
          return written
        },
        async close() {}
      }
    },
    subscribe(options?: SubscribeOptions) {
      check()
      return catalog.subscribe(options)
    },
    async close() {
      if (closed) return
      closed = true
      clearInterval(resync)
      clearTimeout(debounce)
      stream?.cancel()
      wake?.()
      await following
      await serial(async () => {})
      catalog.close()
      client.close()
    }
  }
}

function toCatalogImage(image: WireImage): CatalogImage[] {
  const target = image.target
  if (target === undefined || target.digest === '') return []
  let digest: Digest
  try {
    digest = parseDigest(target.digest)
  } catch {
    return []
  }
  const { reference, registry, name } = imageName(image.name)
  return [{ reference, registry, name, root: { mediaType: target.mediaType, digest, size: target.size } }]
}

async function chooseReadMode(
  wanted: 'auto' | ContentReadMode,
  contentDir: string
): Promise<ContentReadMode> {
  if (wanted === 'grpc') return 'grpc'
  try {
    await access(contentDir, constants.R_OK | constants.X_OK)
    return 'file'
  } catch (err) {
    if (wanted === 'file')
      throw new Error(`containerd content directory ${contentDir} is not readable: ${(err as Error).message}`)
    return 'grpc'
  }
}

/** Whether `file` exists (an error other than its absence, such as EACCES, counts as maybe: containerd is asked). */
function inDirectory(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    (err: unknown) => !isMissingFile(err)
  )
}
