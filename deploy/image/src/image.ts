/**
 * The kadmirror container image: three layers per architecture (the C/C++ runtime libraries from Debian, the
 * Node.js runtime, the bundled daemon), an unprivileged user, and `node /app/bin/kadmirror.mjs` as the
 * entrypoint — Spegel's image is `/spegel` on distroless, with its commands as arguments, and so is this.
 */
import { type BuiltImage, buildImage, buildIndex, OCI_LAYER_TAR_GZIP } from '@kadmirror/oci'
import { type Architecture, fetchPinned, type ImageInputs } from './inputs.ts'
import { type BuiltLayer, buildLayer } from './layer.ts'
import { baseEntries, debianEntries, directoryEntries, IMAGE_USER, nodeRuntimeEntries } from './rootfs.ts'

/** What the image's config says besides its layers. */
export interface ImageMetadata {
  /** The daemon's version (`org.opencontainers.image.version`). */
  version: string
  /** Where the source is (`org.opencontainers.image.source`). */
  source: string
}

/** One architecture's image and its layers (for sizes). */
export interface ArchitectureImage {
  architecture: Architecture
  image: BuiltImage
  layers: { name: string; layer: BuiltLayer }[]
}

/** The three layers of one architecture, built from the pinned inputs and the application directory. */
async function layersFor(
  arch: Architecture,
  inputs: ImageInputs,
  appDir: string,
  mtime: Date,
  offline: boolean
): Promise<{ name: string; layer: BuiltLayer }[]> {
  const libraries = []
  for (const pkg of inputs.debian.packages[arch]) {
    const deb = await fetchPinned(`${inputs.debian.mirror}/${pkg.path}`, pkg.sha256, offline)
    libraries.push(...(await debianEntries(deb)))
  }
  const node = inputs.node[arch]
  const runtime = await nodeRuntimeEntries(await fetchPinned(node.url, node.integrity, offline))
  return [
    { name: 'base', layer: await buildLayer([...baseEntries(), ...libraries], mtime) },
    { name: 'node', layer: await buildLayer(runtime, mtime) },
    { name: 'app', layer: await buildLayer(await directoryEntries(appDir, 'app'), mtime) }
  ]
}

/** The OCI image config fields of the daemon's image. */
function imageConfig(arch: Architecture, inputs: ImageInputs, meta: ImageMetadata, diffIds: string[]) {
  return {
    created: inputs.created,
    config: {
      User: `${IMAGE_USER.uid}:${IMAGE_USER.gid}`,
      Env: ['PATH=/nodejs/bin:/usr/bin:/bin'],
      Entrypoint: ['/nodejs/bin/node', '/app/bin/kadmirror.mjs'],
      WorkingDir: `/home/${IMAGE_USER.name}`,
      ExposedPorts: { '5000/tcp': {}, '5001/tcp': {}, '9090/tcp': {} },
      Labels: {
        'org.opencontainers.image.title': 'kadmirror',
        'org.opencontainers.image.version': meta.version,
        'org.opencontainers.image.source': meta.source,
        'org.opencontainers.image.licenses': 'Apache-2.0',
        'io.kadmirror.node.version': inputs.node.version
      }
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: [
      'C/C++ runtime libraries (Debian)',
      `Node.js ${inputs.node.version}`,
      'kadmirror (bundled)'
    ].map((comment) => ({ created: inputs.created, created_by: 'deploy/image/src/build.ts', comment })),
    architecture: arch,
    os: 'linux'
  }
}

/** What {@link buildDaemonImage} builds from. */
export interface ImageBuild {
  architectures: Architecture[]
  inputs: ImageInputs
  /** The bundled daemon's application directory (`packages/daemon/scripts/bundle.mjs`). */
  appDir: string
  meta: ImageMetadata
  /** Use only the download cache; default false. */
  offline?: boolean
}

/** Builds the image for each architecture and the index over them. */
export async function buildDaemonImage(
  build: ImageBuild
): Promise<{ index: BuiltImage; images: ArchitectureImage[] }> {
  const { inputs, appDir, meta } = build
  const mtime = new Date(inputs.created)
  const images: ArchitectureImage[] = []
  for (const architecture of build.architectures) {
    const layers = await layersFor(architecture, inputs, appDir, mtime, build.offline ?? false)
    const diffIds = layers.map((l) => l.layer.diffId)
    const image = buildImage({
      layers: layers.map((l) => l.layer.gzipped),
      layerMediaType: OCI_LAYER_TAR_GZIP,
      platform: { architecture, os: 'linux' },
      config: imageConfig(architecture, inputs, meta, diffIds)
    })
    images.push({ architecture, image, layers })
  }
  return { index: buildIndex(images.map((i) => i.image)), images }
}
