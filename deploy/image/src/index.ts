/** Builds the kadmirror image as an OCI layout (and archive): what `build.ts` runs and the deploy tests call. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildDaemonImage } from './image.ts'
import { type Architecture, fetchPinned, pinnedDownloads, readInputs } from './inputs.ts'
import { writeImageLayout, writeLayoutArchive } from './layout.ts'
import { nodeRuntimeEntries } from './rootfs.ts'

export { type Architecture, inputsCacheDir, missingDownloads, readInputs } from './inputs.ts'

const imageDir = dirname(dirname(fileURLToPath(import.meta.url)))
const root = dirname(dirname(imageDir))

/** The pinned inputs file. */
export const INPUTS_FILE = join(imageDir, 'inputs.json')
/** The repository containerd records on import (no image is published there yet: push your own). */
export const IMAGE_REPOSITORY = 'ghcr.io/kadmirror/kadmirror'

/** Options of {@link buildImageLayout}. */
export interface ImageLayoutOptions {
  /** The layout directory to (re)write. */
  out: string
  architectures: Architecture[]
  /** Also write the layout as one tar file here (for `ctr images import`). */
  archive?: string
  /** A bundled application directory to use; default: bundle the daemon now. */
  appDir?: string
  /** The layout's tag; default the daemon's version. */
  tag?: string
  /** Use only the download cache (no network); default false. */
  offline?: boolean
}

/** Sizes and digests of a built image. */
export interface ImageLayoutSummary {
  layout: string
  reference: string
  index: string
  images: {
    architecture: Architecture
    manifest: string
    compressedBytes: number
    uncompressedBytes: number
    layers: Record<string, number>
  }[]
}

function daemonVersion(): string {
  return JSON.parse(readFileSync(join(root, 'packages', 'daemon', 'package.json'), 'utf8')).version
}

/** Downloads (into the cache) everything the image of `architectures` needs; nothing is built. */
export async function fetchImageInputs(architectures: Architecture[]): Promise<void> {
  const inputs = await readInputs(INPUTS_FILE)
  for (const arch of architectures)
    for (const download of pinnedDownloads(inputs, arch)) await fetchPinned(download.url, download.digest)
}

/** Bundles the daemon into `appDir` with packages/daemon/scripts/bundle.mjs. */
function bundleInto(appDir: string): void {
  execFileSync(
    process.execPath,
    [join(root, 'packages', 'daemon', 'scripts', 'bundle.mjs'), '--out', appDir],
    {
      stdio: ['ignore', 'ignore', 'inherit']
    }
  )
}

/**
 * Writes what the systemd unit runs (deploy/systemd/kadmirror.service) under `dir`, for host mode: the pinned
 * Node runtime of `arch` at `nodejs/bin/node` and the bundled daemon at `app/` — the image's files without the
 * libraries the host already has. Install it as /opt/kadmirror.
 */
export async function writeHostTree(dir: string, arch: Architecture, offline = false): Promise<void> {
  const inputs = await readInputs(INPUTS_FILE)
  const node = inputs.node[arch]
  const runtime = await nodeRuntimeEntries(await fetchPinned(node.url, node.integrity, offline))
  await rm(dir, { recursive: true, force: true })
  for (const entry of runtime) {
    if (entry.type !== 'file') continue
    await mkdir(dirname(join(dir, entry.path)), { recursive: true })
    await writeFile(join(dir, entry.path), entry.data ?? Buffer.alloc(0))
    await chmod(join(dir, entry.path), entry.mode)
  }
  const scratch = await mkdtemp(join(tmpdir(), 'kadmirror-host-'))
  try {
    bundleInto(join(scratch, 'app'))
    await cp(join(scratch, 'app'), join(dir, 'app'), { recursive: true })
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

/** Bundles the daemon (unless given) and writes the image layout; resolves its summary. */
export async function buildImageLayout(options: ImageLayoutOptions): Promise<ImageLayoutSummary> {
  const version = daemonVersion()
  const tag = options.tag ?? version
  const scratch = await mkdtemp(join(tmpdir(), 'kadmirror-image-'))
  try {
    const appDir = options.appDir === undefined ? join(scratch, 'app') : resolve(options.appDir)
    if (options.appDir === undefined)
      execFileSync(
        process.execPath,
        [join(root, 'packages', 'daemon', 'scripts', 'bundle.mjs'), '--out', appDir],
        {
          stdio: ['ignore', 'ignore', 'inherit']
        }
      )
    const inputs = await readInputs(INPUTS_FILE)
    const { index, images } = await buildDaemonImage({
      architectures: options.architectures,
      inputs,
      appDir,
      meta: { version, source: 'https://github.com/kadmirror/kadmirror' },
      offline: options.offline ?? false
    })
    const out = resolve(options.out)
    const reference = `${IMAGE_REPOSITORY}:${tag}`
    await writeImageLayout(out, index, { tag, name: reference })
    if (options.archive !== undefined)
      await writeLayoutArchive(out, resolve(options.archive), new Date(inputs.created))
    return {
      layout: out,
      reference,
      index: index.root.digest,
      images: images.map(({ architecture, image, layers }) => ({
        architecture,
        manifest: image.root.digest,
        compressedBytes: layers.reduce((sum, l) => sum + l.layer.gzipped.byteLength, 0),
        uncompressedBytes: layers.reduce((sum, l) => sum + l.layer.tarBytes, 0),
        layers: Object.fromEntries(layers.map((l) => [l.name, l.layer.gzipped.byteLength]))
      }))
    }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}
