/**
 * containerd's downloads in progress, read from the content directory's `ingest/`: one directory per download, named
 * by a hash of `<namespace>/<n>/<ref>`, holding `ref` (that string), `total` (the expected size, when known) and
 * `data` (the bytes so far, growing). A pull's refs end with the digest (`layer-sha256:<hex>`, `manifest-…`,
 * `config-…`, `index-…`); containerd's `ListStatuses` gives no more (its `expected` field is empty).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Digest, isDigest } from '@kadmirror/oci'

/** One download containerd is writing now. */
export interface Ingest {
  digest: Digest
  /** containerd's ref of the download, with its namespace (`k8s.io/1/layer-sha256:…`). */
  ref: string
  /** The file the bytes are written to; it grows, and the commit renames it into `blobs/` (same inode). */
  dataPath: string
  /** The size the download will have. */
  totalBytes: number
}

/** Options of {@link IngestDirectory}. */
export interface IngestDirectoryInit {
  /** containerd's content directory (`…/io.containerd.content.v1.content`). */
  contentDir: string
  /** Only downloads of this namespace are seen. */
  namespace: string
}

/** A ref's namespace and digest, or undefined when it names no digest. */
function parseRef(ref: string): { namespace: string; digest: Digest } | undefined {
  const slash = ref.indexOf('/')
  const match = /[-/]([a-z0-9]+:[a-f0-9]{32,})$/.exec(ref)
  if (slash <= 0 || match === null || !isDigest(match[1] as string)) return undefined
  return { namespace: ref.slice(0, slash), digest: match[1] as Digest }
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    throw err
  }
}

/**
 * containerd's downloads in progress in one namespace, read from its content directory each time they are asked for:
 * a directory listing, and the `ref` and `total` files of directories not seen before. The reads are synchronous on
 * purpose: a few bytes of metadata in the page cache take microseconds, while the same reads through libuv's thread
 * pool queued behind the node's spool I/O for 0.2–1.3 s under a flash crowd (measured) — the time peers wait for
 * the download to be offered.
 */
export class IngestDirectory {
  private readonly root: string
  private readonly namespace: string
  /**
   * What was read of each ingest directory seen: its ref (the directory's name is a hash of it: it never changes) and,
   * once written, the expected size (set when the download starts).
   */
  private readonly seen = new Map<string, { ref: string; total?: number }>()

  constructor(init: IngestDirectoryInit) {
    this.root = join(init.contentDir, 'ingest')
    this.namespace = init.namespace
  }

  /** Every download of the namespace in progress whose ref names a digest and whose size is known. */
  async list(): Promise<Ingest[]> {
    let names: string[]
    try {
      names = readdirSync(this.root)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      names = []
    }
    const present = new Set(names)
    for (const name of this.seen.keys()) if (!present.has(name)) this.seen.delete(name)
    return names.map((name) => this.read(name)).filter((ingest): ingest is Ingest => ingest !== undefined)
  }

  /** The download of `digest` in progress, or undefined. */
  async find(digest: Digest): Promise<Ingest | undefined> {
    return (await this.list()).find((ingest) => ingest.digest === digest)
  }

  private read(name: string): Ingest | undefined {
    const dir = join(this.root, name)
    let seen = this.seen.get(name)
    if (seen === undefined) {
      const ref = readOptional(join(dir, 'ref'))
      if (ref === undefined) return undefined
      seen = { ref }
      this.seen.set(name, seen)
    }
    const parsed = parseRef(seen.ref)
    if (parsed === undefined || parsed.namespace !== this.namespace) return undefined
    if (seen.total === undefined) {
      const total = Number.parseInt(readOptional(join(dir, 'total')) ?? '', 10)
      if (!Number.isSafeInteger(total) || total < 0) return undefined
      seen.total = total
    }
    return { digest: parsed.digest, ref: seen.ref, dataPath: join(dir, 'data'), totalBytes: seen.total }
  }
}
