/**
 * containerd's answer to "does this namespace hold this blob, and how big is it" (content Info), shared: calls for a
 * digest already being asked wait for that call, and a blob found is remembered for a moment. When many peers ask a
 * node for the same blob at once (a flash crowd), containerd — busy writing the downloads — answers one Info call
 * instead of dozens; content is immutable, so only a deletion can make the remembered answer stale, for at most
 * {@link INFO_CACHE_MS} (the bytes are read from the file, which a deletion removes).
 */
import type { Digest } from '@kadmirror/oci'

/** How long a blob found in the namespace is remembered, in ms. */
export const INFO_CACHE_MS = 1000
/** The most blobs remembered at once (older entries are dropped first). */
const INFO_CACHE_ENTRIES = 1024

/** Wraps `info` (the blob's size, or undefined when the namespace does not hold it) with sharing and a short memory. */
export function sharedInfo(
  info: (digest: Digest) => Promise<number | undefined>,
  now: () => number = () => performance.now()
): (digest: Digest) => Promise<number | undefined> {
  const found = new Map<Digest, { size: number; until: number }>()
  const asking = new Map<Digest, Promise<number | undefined>>()
  return (digest) => {
    const known = found.get(digest)
    if (known !== undefined && known.until > now()) return Promise.resolve(known.size)
    const pending = asking.get(digest)
    if (pending !== undefined) return pending
    const call = info(digest)
      .then((size) => {
        found.delete(digest)
        if (size !== undefined) found.set(digest, { size, until: now() + INFO_CACHE_MS })
        if (found.size > INFO_CACHE_ENTRIES) found.delete(found.keys().next().value as Digest)
        return size
      })
      .finally(() => asking.delete(digest))
    asking.set(digest, call)
    return call
  }
}
