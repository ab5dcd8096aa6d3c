/**
 * The pinned inputs of the image (deploy/image/inputs.json): the Node.js runtime from the npm registry and the
 * Debian packages its binary links against, each fetched once into a cache directory and refused unless its
 * digest matches the pin.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

/** An architecture the image is built for (OCI `architecture`). */
export type Architecture = 'amd64' | 'arm64'

/** One Debian package: its path on the mirror and the SHA-256 of the `.deb`. */
export interface DebianPackage {
  name: string
  path: string
  sha256: string
}

/** The parsed inputs.json. */
export interface ImageInputs {
  /** The image's creation time (RFC 3339), fixed so that builds are reproducible. */
  created: string
  node: { version: string } & Record<Architecture, { url: string; integrity: string }>
  debian: { mirror: string; packages: Record<Architecture, DebianPackage[]> }
}

/** Reads and checks `deploy/image/inputs.json` (or `file`). */
export async function readInputs(file: string): Promise<ImageInputs> {
  const inputs = JSON.parse(await readFile(file, 'utf8')) as ImageInputs
  if (Number.isNaN(Date.parse(inputs.created))) throw new Error(`${file}: created is not a date`)
  for (const arch of ['amd64', 'arm64'] as const) {
    if (inputs.node[arch]?.integrity?.startsWith('sha512-') !== true)
      throw new Error(`${file}: node.${arch} needs an sha512 integrity`)
    if (!Array.isArray(inputs.debian.packages[arch]))
      throw new Error(`${file}: debian.packages.${arch} missing`)
  }
  return inputs
}

/** The cache directory for downloaded inputs: `KADMIRROR_BUILD_CACHE`/image-inputs, default ~/.cache/kadmirror. */
export function inputsCacheDir(): string {
  return join(process.env.KADMIRROR_BUILD_CACHE ?? join(homedir(), '.cache', 'kadmirror'), 'image-inputs')
}

/** An `sha256:<hex>` or npm `sha512-<base64>` check of `bytes`; throws when it does not match. */
function verify(bytes: Buffer, expected: string, what: string): void {
  const [algorithm, value, encoding] = expected.startsWith('sha512-')
    ? (['sha512', expected.slice(7), 'base64'] as const)
    : (['sha256', expected, 'hex'] as const)
  const actual = createHash(algorithm).update(bytes).digest(encoding)
  if (actual !== value)
    throw new Error(`${what}: digest ${algorithm} ${actual} does not match the pinned ${value}`)
}

/** Where `url` is kept in the cache. */
function cachedPath(url: string): string {
  return join(inputsCacheDir(), createHash('sha256').update(url).digest('hex').slice(0, 32))
}

/** Every download the image needs: its URL and pinned digest. */
export function pinnedDownloads(inputs: ImageInputs, arch: Architecture): { url: string; digest: string }[] {
  return [
    { url: inputs.node[arch].url, digest: inputs.node[arch].integrity },
    ...inputs.debian.packages[arch].map((p) => ({
      url: `${inputs.debian.mirror}/${p.path}`,
      digest: p.sha256
    }))
  ]
}

/** The downloads of `arch` that are not in the cache yet (an offline build needs none). */
export function missingDownloads(inputs: ImageInputs, arch: Architecture): string[] {
  return pinnedDownloads(inputs, arch)
    .map((d) => d.url)
    .filter((url) => !existsSync(cachedPath(url)))
}

/**
 * The bytes at `url`, from the cache when present, else downloaded (unless `offline`: then an error); verified
 * against `expected` either way.
 */
export async function fetchPinned(url: string, expected: string, offline = false): Promise<Buffer> {
  const dir = inputsCacheDir()
  const file = cachedPath(url)
  if (existsSync(file)) {
    const cached = await readFile(file)
    verify(cached, expected, url)
    return cached
  }
  if (offline) throw new Error(`${url} is not in ${dir} (offline build: fetch the inputs first)`)
  const response = await fetch(url)
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`)
  const bytes = Buffer.from(await response.arrayBuffer())
  verify(bytes, expected, url)
  await mkdir(dir, { recursive: true })
  await writeFile(`${file}.partial`, bytes)
  await rename(`${file}.partial`, file)
  return bytes
}
