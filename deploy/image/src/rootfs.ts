/**
 * The files of the image's root filesystem, as entries taken out of tar streams (the Node.js package from the npm
 * registry, Debian packages through `dpkg-deb --fsys-tarfile`) or written here (passwd, group, the app).
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { extract } from 'tar-stream'

/** One file, directory or symbolic link of the root filesystem; paths have no leading `/`. */
export interface RootfsEntry {
  path: string
  type: 'file' | 'directory' | 'symlink'
  /** Permission bits, e.g. 0o755. */
  mode: number
  uid?: number
  gid?: number
  data?: Buffer
  linkname?: string
}

/** The user the image runs as unless told otherwise (distroless's `nonroot`). */
export const IMAGE_USER = { name: 'nonroot', uid: 65532, gid: 65532 } as const

/** Entries of a tar stream whose path `rename` maps to a path in the image (undefined drops the entry). */
export async function tarEntries(
  stream: Readable,
  rename: (path: string) => string | undefined
): Promise<RootfsEntry[]> {
  const entries: RootfsEntry[] = []
  const tar = extract()
  stream.pipe(tar)
  for await (const entry of tar) {
    const path = rename(entry.header.name.replace(/^\.?\//, '').replace(/\/$/, ''))
    const chunks: Buffer[] = []
    for await (const chunk of entry) chunks.push(chunk as Buffer)
    const type = entry.header.type
    if (path === undefined || path === '') continue
    const mode = (entry.header.mode ?? 0o644) & 0o7777
    if (type === 'file') entries.push({ path, type, mode, data: Buffer.concat(chunks) })
    else if (type === 'directory') entries.push({ path, type, mode })
    else if (type === 'symlink') entries.push({ path, type, mode, linkname: entry.header.linkname ?? '' })
  }
  return entries
}

/** The Node.js runtime from the npm package tarball: `nodejs/bin/node` and its licence. */
export async function nodeRuntimeEntries(tarball: Buffer): Promise<RootfsEntry[]> {
  const keep: Record<string, string> = {
    'package/bin/node': 'nodejs/bin/node',
    'package/LICENSE': 'nodejs/LICENSE'
  }
  const entries = await tarEntries(Readable.from([tarball]).pipe(createGunzip()), (path) => keep[path])
  if (!entries.some((e) => e.path === 'nodejs/bin/node'))
    throw new Error('the Node.js package has no bin/node')
  return entries
}

/** What a Debian package gives the image: shared libraries (no gconv modules) and its copyright file. */
function libraryPath(path: string): string | undefined {
  if (path.includes('/gconv')) return undefined
  if (/^(lib|lib64|usr\/lib)(\/|$)/.test(path)) return path
  if (/^usr\/share\/doc\/[^/]+\/copyright$/.test(path)) return path
  return undefined
}

/** The library entries of one `.deb` (unpacked with `dpkg-deb --fsys-tarfile`). */
export async function debianEntries(deb: Buffer): Promise<RootfsEntry[]> {
  const dir = await mkdtemp(join(tmpdir(), 'kadmirror-deb-'))
  try {
    await writeFile(join(dir, 'package.deb'), deb)
    const child = spawn('dpkg-deb', ['--fsys-tarfile', join(dir, 'package.deb')], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', resolve)
    })
    const entries = await tarEntries(child.stdout, libraryPath)
    if ((await exited) !== 0) throw new Error('dpkg-deb --fsys-tarfile failed')
    return entries
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Every file under `dir` as entries below `prefix` (the bundled daemon's application directory; '' for none). */
export async function directoryEntries(dir: string, prefix: string): Promise<RootfsEntry[]> {
  const entries: RootfsEntry[] = prefix === '' ? [] : [{ path: prefix, type: 'directory', mode: 0o755 }]
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const source = join(dir, name)
    const path = join(prefix, relative(dir, source))
    const info = await stat(source)
    if (info.isDirectory()) entries.push({ path, type: 'directory', mode: 0o755 })
    else entries.push({ path, type: 'file', mode: 0o644, data: await readFile(source) })
  }
  return entries
}

/** `/etc/passwd`, `/etc/group`, an unprivileged user's home, `/tmp`, and the data directory the daemon defaults to. */
export function baseEntries(): RootfsEntry[] {
  const { name, uid, gid } = IMAGE_USER
  const text = (s: string) => Buffer.from(s)
  return [
    { path: 'etc', type: 'directory', mode: 0o755 },
    {
      path: 'etc/passwd',
      type: 'file',
      mode: 0o644,
      data: text(
        `root:x:0:0:root:/root:/sbin/nologin\n${name}:x:${uid}:${gid}:${name}:/home/${name}:/sbin/nologin\n`
      )
    },
    { path: 'etc/group', type: 'file', mode: 0o644, data: text(`root:x:0:\n${name}:x:${gid}:\n`) },
    { path: 'home', type: 'directory', mode: 0o755 },
    { path: `home/${name}`, type: 'directory', mode: 0o700, uid, gid },
    { path: 'root', type: 'directory', mode: 0o700 },
    { path: 'tmp', type: 'directory', mode: 0o1777 },
    { path: 'var', type: 'directory', mode: 0o755 },
    { path: 'var/lib', type: 'directory', mode: 0o755 }
  ]
}
