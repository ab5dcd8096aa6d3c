/**
 * Reading content kept in files, shared by the stores that keep it so (the OCI-layout store here, containerd's
 * content directory in @kadmirror/containerd).
 */
import type { FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { ByteRange } from '@kadmirror/oci'
import type { ContentReader } from './content-store.ts'

/** Read-stream chunk size, in bytes: larger than fs's 64 KiB default, fewer syscalls per blob. */
export const READ_HIGH_WATER_MARK = 1024 * 1024

/** True for the errors of a file that is not there (or not reachable without following a symlink). */
export function isMissingFile(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP'
}

/**
 * A stream of an open file's bytes, whole (`size` bytes) or the inclusive `range`, closing the file at the end.
 * Its buffer is never larger than what is read: small blobs (manifests, configs) are read often.
 */
export function fileContentStream(handle: FileHandle, size: number, range?: ByteRange): Readable {
  const length = range === undefined ? size : range.end - range.start + 1
  return handle.createReadStream({
    highWaterMark: Math.max(1, Math.min(READ_HIGH_WATER_MARK, length)),
    ...(range === undefined ? {} : { start: range.start, end: range.end })
  })
}

/** A {@link ContentReader} over an open file; closing the reader closes the file (once). */
export async function fileContentReader(handle: FileHandle): Promise<ContentReader> {
  let size: number
  try {
    size = (await handle.stat()).size
  } catch (err) {
    await handle.close()
    throw err
  }
  let closed: Promise<void> | undefined
  return {
    size,
    async read(target, offset, length, position) {
      return (await handle.read(target, offset, length, position)).bytesRead
    },
    close() {
      closed ??= handle.close()
      return closed
    }
  }
}
