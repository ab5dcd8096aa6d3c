/**
 * The `ContentStore` interface: what a node holds, as the router advertises it and the mirror serves it.
 * Implementations: {@link createMemoryStore}, {@link openOciLayoutStore}, and containerd's in @kadmirror/containerd.
 */
import type { Readable } from 'node:stream'
import type { ByteRange, Digest } from '@kadmirror/oci'

/**
 * One key a node advertises: a digest it holds, or a `registry/repository:tag` reference with the digest
 * it points to. `key` is the exact string put into the DHT (Spegel's encoding).
 */
export interface StoreKey {
  /** The advertised string: a digest (`sha256:…`) or a canonical tag reference (`docker.io/library/nginx:1.27`). */
  key: string
  /** The digest the key stands for; equal to `key` for digest keys. */
  digest: Digest
  /** The registry of the image that brought this key (for a blob shared by several images, one of them); for metrics. */
  registry?: string
  /**
   * Names of the images whose content includes this key (`registry/repository:tag`, or `registry/repository` for an
   * image without a tag), when the store knows them: what registry filters judge. Shared; do not modify.
   */
  images?: readonly string[]
}

/** A change to what the store holds: a key appeared (or a tag now points elsewhere), or disappeared. */
export interface StoreEvent {
  type: 'added' | 'removed'
  key: StoreKey
}

/** What a store knows of one piece of content. */
export interface ContentInfo {
  digest: Digest
  /** Size in bytes. */
  size: number
  /** Media type, when the store knows it (always for manifests and indexes it advertises). */
  mediaType?: string
}

/**
 * Random access to one piece of content, so a server can copy it with buffers it reuses instead of a
 * stream's fresh ones (twice the throughput of a stream for large blobs).
 */
export interface ContentReader {
  /** Size in bytes. */
  readonly size: number
  /**
   * Reads up to `length` bytes at byte `position` of the content into `target` from `offset`; resolves the
   * number of bytes read, 0 at the end.
   */
  read(target: Uint8Array, offset: number, length: number, position: number): Promise<number>
  /** Releases the reader. Idempotent. */
  close(): Promise<void>
}

/** Options of {@link ContentStore.subscribe}. */
export interface SubscribeOptions {
  /** Ends the iteration when aborted. */
  signal?: AbortSignal
}

/**
 * Content a node holds, addressed by digest, plus the tags that point into it.
 * All methods reject with `StoreClosedError` after {@link ContentStore.close}.
 */
export interface ContentStore {
  /**
   * Every key the node should advertise: each digest of every complete image it holds (index, manifests,
   * configs, layers) and each image's tag reference. Content only partly present is left out.
   */
  keys(): AsyncIterable<StoreKey>
  /**
   * The digest a reference points to (`registry/repository:tag`, with Docker's defaults applied), or
   * undefined when the store has no such tag. A reference with a digest resolves to that digest when held.
   * @throws {InvalidReferenceError} (from @kadmirror/oci) when `reference` does not parse.
   */
  resolve(reference: string): Promise<Digest | undefined>
  /** Size and media type of a digest's content, or undefined when not held. */
  stat(digest: Digest): Promise<ContentInfo | undefined>
  /**
   * A stream of a digest's bytes, whole or the inclusive byte `range` (`0 ≤ start ≤ end < size`).
   * The bytes are streamed, never held whole in memory.
   * @throws {ContentNotFoundError} when the digest is not held.
   * @throws {RangeNotSatisfiableError} (from @kadmirror/oci) when the range lies outside the content.
   */
  read(digest: Digest, range?: ByteRange): Promise<Readable>
  /**
   * Optional random access to a digest's bytes; resolves undefined when the digest is not held. Servers use
   * it, when present, to copy large blobs with reused buffers.
   */
  open?(digest: Digest): Promise<ContentReader | undefined>
  /**
   * Changes from now on, in order, until the store closes or `signal` aborts. Each iterator gets every event;
   * a slow consumer's events are queued, not dropped.
   */
  subscribe(options?: SubscribeOptions): AsyncIterable<StoreEvent>
  /** Stops watching and ends all subscriptions. Reads already started finish. Idempotent. */
  close(): Promise<void>
}
