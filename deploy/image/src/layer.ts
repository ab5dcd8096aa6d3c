/**
 * Image layers made reproducibly: entries sorted by path, every parent directory present, one fixed time on every
 * entry, owners numeric, then gzip at a fixed level — the same inputs give the same bytes and digests.
 */
import { dirname } from 'node:path'
import { gzipSync } from 'node:zlib'
import { type Digest, digestOf } from '@kadmirror/oci'
import { pack } from 'tar-stream'
import type { RootfsEntry } from './rootfs.ts'

/** A compressed layer and the digest of its uncompressed tar (the config's `diff_id`). */
export interface BuiltLayer {
  gzipped: Uint8Array
  diffId: Digest
  /** Uncompressed size in bytes. */
  tarBytes: number
}

/** The entries with each missing parent directory added (mode 0755) and duplicates resolved last-wins. */
function withParents(entries: RootfsEntry[]): RootfsEntry[] {
  const byPath = new Map<string, RootfsEntry>()
  for (const entry of entries) {
    for (let dir = dirname(entry.path); dir !== '.' && dir !== '/'; dir = dirname(dir))
      if (!byPath.has(dir)) byPath.set(dir, { path: dir, type: 'directory', mode: 0o755 })
    byPath.set(entry.path, entry)
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

/** The uncompressed tar of `entries` (parents added, sorted), each stamped with `mtime`. */
export async function tarOf(entries: RootfsEntry[], mtime: Date): Promise<Buffer> {
  const tar = pack()
  const chunks: Buffer[] = []
  const done = (async () => {
    for await (const chunk of tar) chunks.push(chunk as Buffer)
  })()
  for (const entry of withParents(entries)) {
    const header = {
      name: entry.type === 'directory' ? `${entry.path}/` : entry.path,
      type: entry.type,
      mode: entry.mode,
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      uname: '',
      gname: '',
      mtime
    }
    if (entry.type === 'file')
      tar.entry({ ...header, size: entry.data?.length ?? 0 }, entry.data ?? Buffer.alloc(0))
    else if (entry.type === 'symlink') tar.entry({ ...header, linkname: entry.linkname ?? '' })
    else tar.entry(header)
  }
  tar.finalize()
  await done
  return Buffer.concat(chunks)
}

/** Builds one reproducible `tar+gzip` layer from `entries`. */
export async function buildLayer(entries: RootfsEntry[], mtime: Date): Promise<BuiltLayer> {
  const tar = await tarOf(entries, mtime)
  return { gzipped: gzipSync(tar, { level: 9 }), diffId: digestOf(tar), tarBytes: tar.length }
}
