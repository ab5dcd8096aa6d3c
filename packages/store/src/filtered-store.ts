/**
 * A store seen through a filter of image names: content that belongs only to images the filter refuses (registry
 * filters, a list of mirrored registries) is neither listed (so not advertised) nor served, by tag or by digest,
 * whatever repository name a request uses. Content the store holds outside every complete image (partial pulls,
 * orphans) is not served either: nothing says which registry it came from.
 */
import { type Digest, parseReference, tagKey } from '@kadmirror/oci'
import type { ContentReader, ContentStore, StoreEvent, StoreKey } from './content-store.ts'
import { ContentNotFoundError } from './errors.ts'
import { EventHub } from './events.ts'

/**
 * Decides an image by its name (`registry/repository:tag`, or `registry/repository` without a tag); `undefined` for
 * content of images without a name. True: the image may be advertised and served.
 */
export type ImageFilter = (image: string | undefined) => boolean

/** A {@link ContentStore} limited by an {@link ImageFilter}; `close()` stops watching but leaves the wrapped store open. */
export interface FilteredStore extends ContentStore {
  /** Resolves once the allowed content reflects every change the wrapped store announced so far. */
  settled(): Promise<void>
}

/** Whether a key may be advertised and served: some image it belongs to is allowed. */
function allowedKey(key: StoreKey, allow: ImageFilter): boolean {
  if (key.images === undefined || key.images.length === 0) return allow(undefined)
  return key.images.some((image) => allow(image))
}

/**
 * Wraps `store` so that only content of images `allow` accepts is listed, resolved and read. The allowed set is
 * rebuilt from `store.keys()` after every change the store announces; its own events are the difference (a blob
 * whose last allowed image went away is `removed`, even though the store still holds it).
 */
export function filterImages(store: ContentStore, allow: ImageFilter): FilteredStore {
  const transitions = new EventHub()
  const watching = new AbortController()
  let allowed = new Map<string, StoreKey>()
  let digests = new Set<Digest>()
  /** Every key the wrapped store listed at the last rebuild, allowed or not. */
  let listed = new Set<string>()
  let dirty = true
  let current: Promise<void> = Promise.resolve()

  const rebuild = async (): Promise<void> => {
    const next = new Map<string, StoreKey>()
    const all = new Set<string>()
    for await (const key of store.keys()) {
      all.add(key.key)
      if (allowedKey(key, allow)) next.set(key.key, key)
    }
    // Keys whose own appearance or removal the wrapped store did not announce: a blob that lost its last allowed
    // image, or gained one.
    const changed: StoreEvent[] = []
    for (const [name, key] of allowed)
      if (!next.has(name) && all.has(name)) changed.push({ type: 'removed', key })
    for (const [name, key] of next)
      if (!allowed.has(name) && listed.has(name)) changed.push({ type: 'added', key })
    allowed = next
    listed = all
    digests = new Set([...next.values()].map((key) => key.digest))
    transitions.publish(changed)
  }
  const settled = (): Promise<void> => {
    if (dirty) {
      dirty = false
      current = current.then(rebuild, rebuild)
    }
    return current
  }
  void (async () => {
    try {
      for await (const _ of store.subscribe({ signal: watching.signal })) {
        dirty = true
        void settled().catch(() => {})
      }
    } catch {}
  })()
  const held = async (digest: Digest): Promise<boolean> => {
    await settled()
    return digests.has(digest)
  }

  return {
    settled,
    async *keys() {
      await settled()
      yield* [...allowed.values()]
    },
    async resolve(reference) {
      const parsed = parseReference(reference)
      const tag = tagKey(parsed)
      await settled()
      if (parsed.digest === undefined && (tag === undefined || !allowed.has(tag))) return undefined
      const digest = await store.resolve(reference)
      return digest !== undefined && digests.has(digest) ? digest : undefined
    },
    async stat(digest) {
      return (await held(digest)) ? store.stat(digest) : undefined
    },
    async read(digest, range) {
      if (!(await held(digest))) throw new ContentNotFoundError(digest)
      return store.read(digest, range)
    },
    ...(store.open === undefined
      ? {}
      : {
          async open(digest: Digest): Promise<ContentReader | undefined> {
            return (await held(digest)) ? store.open?.(digest) : undefined
          }
        }),
    subscribe(options) {
      // The wrapped store's own events (added keys of refused images left out), merged with the keys whose standing
      // changed without an event of their own.
      return merge(
        [store.subscribe(options), transitions.subscribe(options)],
        (event) => event.type === 'removed' || allowedKey(event.key, allow)
      )
    },
    async close() {
      watching.abort()
      transitions.close()
    }
  }
}

/**
 * The events of several subscriptions as they come, those `keep` accepts; ends when all end. Its `return()` ends it at
 * once, even while a `next()` waits (as a store subscription's does).
 */
function merge(
  sources: readonly AsyncIterable<StoreEvent>[],
  keep: (event: StoreEvent) => boolean
): AsyncIterable<StoreEvent> {
  const iterators = sources.map((source) => source[Symbol.asyncIterator]())
  const queue: StoreEvent[] = []
  let open = iterators.length
  let ended = false
  let wake: (() => void) | undefined
  const pump = async (iterator: AsyncIterator<StoreEvent>): Promise<void> => {
    try {
      for (let r = await iterator.next(); r.done !== true && !ended; r = await iterator.next())
        if (keep(r.value)) {
          queue.push(r.value)
          wake?.()
        }
    } catch {}
    open--
    wake?.()
  }
  for (const iterator of iterators) void pump(iterator)
  const finish = async (): Promise<IteratorResult<StoreEvent>> => {
    ended = true
    queue.length = 0
    wake?.()
    await Promise.all(iterators.map((iterator) => iterator.return?.()))
    return { value: undefined, done: true }
  }
  return {
    [Symbol.asyncIterator]: () => ({
      async next(): Promise<IteratorResult<StoreEvent>> {
        while (queue.length === 0 && open > 0 && !ended)
          await new Promise<void>((resolve) => (wake = resolve))
        const value = queue.shift()
        return value === undefined ? { value: undefined, done: true } : { value, done: false }
      },
      return: finish
    })
  }
}
