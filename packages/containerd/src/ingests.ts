/**
 * containerd's downloads in progress, read from the content directory's `ingest/`: one directory per download, named
 * by a hash of `<namespace>/<n>/<ref>`, holding `ref` (that string), `total` (the expected size, when known) and
 * `data` (the bytes so far, growing). A pull's refs end with the digest (`layer-sha256:<hex>`, `manifest-…`,
 * `config-…`, `index-…`); containerd's `ListStatuses` gives no more (its `expected` field is empty).
 */
import { readdir, readFile } from 'node:fs/promises'
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

async function readOptional(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined
    throw err
  })
}

/** containerd's downloads in progress in one namespace, read from its content directory each time they are asked for. */
export class IngestDirectory {
  private readonly root: string
  private readonly namespace: string
  /** Refs of the ingest directories seen (a directory's name is a hash of its ref: it never changes). */
  private readonly refs = new Map<string, string>()

  constructor(init: IngestDirectoryInit) {
    this.root = join(init.contentDir, 'ingest')
    this.namespace = init.namespace
  }

  /** Every download of the namespace in progress whose ref names a digest and whose size is known. */
  async list(): Promise<Ingest[]> {
    const names = await readdir(this.root).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[]
      throw err
    })
    for (const name of this.refs.keys()) if (!names.includes(name)) this.refs.delete(name)
    const found = await Promise.all(names.map((name) => this.read(name)))
    return found.filter((ingest): ingest is Ingest => ingest !== undefined)
  }

  /** The download of `digest` in progress, or undefined. */
  async find(digest: Digest): Promise<Ingest | undefined> {
    return (await this.list()).find((ingest) => ingest.digest === digest)
  }

  private async read(name: string): Promise<Ingest | undefined> {
    const dir = join(this.root, name)
    let ref = this.refs.get(name)
    if (ref === undefined) {
      ref = await readOptional(join(dir, 'ref'))
      if (ref === undefined) return undefined
      this.refs.set(name, ref)
    }
    const parsed = parseRef(ref)
    if (parsed === undefined || parsed.namespace !== this.namespace) return undefined
    const total = Number.parseInt((await readOptional(join(dir, 'total'))) ?? '', 10)
    if (!Number.isSafeInteger(total) || total < 0) return undefined
    return { digest: parsed.digest, ref, dataPath: join(dir, 'data'), totalBytes: total }
  }
}
