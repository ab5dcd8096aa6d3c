/**
 * The catalog of a store: from its images (tag reference → root descriptor) and the content it holds,
 * the keys to advertise, the tags, and the media types of manifests. Shared by every store here.
 */
import {
  type Descriptor,
  type Digest,
  isIndexMediaType,
  isManifestOrIndexMediaType,
  parseManifest,
  parseReference,
  referencedDescriptors,
  tagKey
} from '@kadmirror/oci'
import type { ContentInfo, StoreEvent, StoreKey, SubscribeOptions } from './content-store.ts'
import { EventHub } from './events.ts'

/** An image as a store lists it: its tag reference (canonical, or undefined when it has none) and root. */
export interface CatalogImage {
  /** Canonical `registry/repository:tag`, or undefined for an image without a full reference. */
  reference: string | undefined
  /** Registry of the image, for per-registry counts. */
  registry: string | undefined
  /** `registry/repository:tag`, or `registry/repository` without a tag; undefined when the image has no name. */
  name?: string | undefined
  root: Descriptor
}

/** How a catalog reads the store it describes. */
export interface CatalogSource {
  /** The bytes of a manifest or index, or undefined when absent. */
  load(digest: Digest): Promise<Uint8Array | undefined>
  /** Whether a blob is present. */
  has(digest: Digest): Promise<boolean>
  /** Called for a manifest that does not parse; it is treated as absent. */
  onInvalid?(digest: Digest, error: Error): void
}

/** Keys to advertise, tags, and known media types. */
export interface Catalog {
  /** Advertised keys by their string. */
  keys: Map<string, StoreKey>
  /** Tag reference → digest. */
  tags: Map<string, Digest>
  /** Media types learnt from descriptors. */
  mediaTypes: Map<Digest, string>
}

/** An empty catalog. */
export function emptyCatalog(): Catalog {
  return { keys: new Map(), tags: new Map(), mediaTypes: new Map() }
}

interface Visit {
  /** True when the content and everything it needs is present (an index: at least one child complete). */
  complete: boolean
  /** Digests to advertise for it: empty unless complete. */
  digests: Digest[]
}

/**
 * Builds the catalog of `images`. A manifest counts only when its config and every layer are present; an
 * index counts when at least one child manifest does, and then lists only the complete children. Subjects
 * (the images an artifact refers to) are not followed: they are other images.
 */
export async function buildCatalog(images: Iterable<CatalogImage>, source: CatalogSource): Promise<Catalog> {
  const catalog = emptyCatalog()
  const visits = new Map<Digest, Promise<Visit>>()

  const visit = (descriptor: Descriptor): Promise<Visit> => {
    let pending = visits.get(descriptor.digest)
    if (pending === undefined) {
      pending = visitUncached(descriptor)
      visits.set(descriptor.digest, pending)
    }
    return pending
  }

  const visitUncached = async (descriptor: Descriptor): Promise<Visit> => {
    catalog.mediaTypes.set(descriptor.digest, descriptor.mediaType)
    if (!isManifestOrIndexMediaType(descriptor.mediaType)) {
      const present = await source.has(descriptor.digest)
      return { complete: present, digests: present ? [descriptor.digest] : [] }
    }
    const bytes = await source.load(descriptor.digest)
    if (bytes === undefined) return { complete: false, digests: [] }
    let children: Descriptor[]
    try {
      const manifest = parseManifest(bytes, descriptor.mediaType)
      children = referencedDescriptors(manifest)
        .filter((r) => r.relation !== 'subject')
        .map((r) => r.descriptor)
      catalog.mediaTypes.set(descriptor.digest, manifest.mediaType)
    } catch (err) {
      source.onInvalid?.(descriptor.digest, err as Error)
      return { complete: false, digests: [] }
    }
    const results = await Promise.all(children.map(visit))
    if (isIndexMediaType(descriptor.mediaType)) {
      const complete = results.filter((r) => r.complete)
      if (complete.length === 0 && children.length > 0) return { complete: false, digests: [] }
      return { complete: true, digests: [descriptor.digest, ...complete.flatMap((r) => r.digests)] }
    }
    if (!results.every((r) => r.complete)) return { complete: false, digests: [] }
    return { complete: true, digests: [descriptor.digest, ...results.flatMap((r) => r.digests)] }
  }

  const list = [...images]
  const results = await Promise.all(list.map((image) => visit(image.root)))
  list.forEach((image, i) => {
    const result = results[i] as Visit
    if (!result.complete) return
    const registry = image.registry
    // One names array per image, shared by its keys; a key in a second image gets its own copy.
    const names: readonly string[] | undefined = image.name === undefined ? undefined : [image.name]
    for (const digest of result.digests) {
      const known = catalog.keys.get(digest)
      if (known === undefined) catalog.keys.set(digest, withImage({ key: digest, digest }, registry, names))
      else if (image.name !== undefined && !known.images?.includes(image.name))
        known.images = [...(known.images ?? []), image.name]
    }
    if (image.reference !== undefined) {
      catalog.tags.set(image.reference, image.root.digest)
      catalog.keys.set(
        image.reference,
        withImage({ key: image.reference, digest: image.root.digest }, registry, names)
      )
    }
  })
  return catalog
}

function withImage(
  key: StoreKey,
  registry: string | undefined,
  images: readonly string[] | undefined
): StoreKey {
  if (registry !== undefined) key.registry = registry
  if (images !== undefined) key.images = images
  return key
}

/** The events that turn `before` into `after`: removed keys, added keys, and tags that now point elsewhere (as added). */
export function diffCatalogs(before: Catalog, after: Catalog): StoreEvent[] {
  const events: StoreEvent[] = []
  for (const [key, value] of before.keys) {
    if (!after.keys.has(key)) events.push({ type: 'removed', key: value })
  }
  for (const [key, value] of after.keys) {
    const old = before.keys.get(key)
    if (old === undefined || old.digest !== value.digest) events.push({ type: 'added', key: value })
  }
  return events
}

/**
 * Resolves a reference in a catalog: a reference with a digest gives that digest when `has` it, a tag gives
 * the digest it points to.
 * @throws {InvalidReferenceError} when `reference` does not parse.
 */
export async function resolveReference(
  catalog: Catalog,
  reference: string,
  has: (digest: Digest) => Promise<boolean>
): Promise<Digest | undefined> {
  const parsed = parseReference(reference)
  if (parsed.digest !== undefined) return (await has(parsed.digest)) ? parsed.digest : undefined
  const key = tagKey(parsed)
  return key === undefined ? undefined : catalog.tags.get(key)
}

/**
 * The canonical tag reference, registry and filter name (`registry/repository[:tag]`) of an image name, or undefined
 * parts when it has no registry or tag.
 */
export function imageName(name: string | undefined): {
  reference: string | undefined
  registry: string | undefined
  name: string | undefined
} {
  if (name === undefined) return { reference: undefined, registry: undefined, name: undefined }
  try {
    const parsed = parseReference(name, { defaults: false })
    const reference = tagKey(parsed)
    return {
      reference,
      registry: parsed.registry,
      name: reference ?? `${parsed.registry}/${parsed.repository}`
    }
  } catch {
    return { reference: undefined, registry: undefined, name: undefined }
  }
}

/**
 * The catalog a store serves from: replaced whole when what the store holds changes, the difference published
 * to subscribers as events. Holds what every store answers from its catalog.
 */
export class LiveCatalog {
  private current: Catalog
  private readonly hub = new EventHub()

  constructor(initial: Catalog = emptyCatalog()) {
    this.current = initial
  }

  /** Replaces the catalog; returns (and publishes) the events that turn the old one into it. */
  replace(next: Catalog): StoreEvent[] {
    const events = diffCatalogs(this.current, next)
    this.current = next
    this.hub.publish(events)
    return events
  }

  /** A snapshot of the keys to advertise. */
  async *keys(): AsyncGenerator<StoreKey> {
    yield* [...this.current.keys.values()]
  }

  /** See {@link resolveReference}. */
  resolve(reference: string, has: (digest: Digest) => Promise<boolean>): Promise<Digest | undefined> {
    return resolveReference(this.current, reference, has)
  }

  /** Content info of a digest of `size` bytes, with the media type when the catalog knows it. */
  info(digest: Digest, size: number): ContentInfo {
    const info: ContentInfo = { digest, size }
    const mediaType = this.current.mediaTypes.get(digest)
    if (mediaType !== undefined) info.mediaType = mediaType
    return info
  }

  subscribe(options?: SubscribeOptions): AsyncIterable<StoreEvent> {
    return this.hub.subscribe(options)
  }

  close(): void {
    this.hub.close()
  }
}
