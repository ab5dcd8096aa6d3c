/**
 * Builds images in memory — manifest, config, layers, and multi-platform indexes — for tests, demos,
 * benchmarks and stores that add images.
 */
import { type Digest, digestOf } from './digest.ts'
import type { Descriptor, ImageIndex, ImageManifest, Platform } from './manifest.ts'
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST } from './media-types.ts'

/** An image held in memory: its root descriptor (manifest or index) and every blob it needs, root included. */
export interface BuiltImage {
  /** The manifest or index at the top. */
  root: Descriptor
  /** Every blob by digest: root, child manifests, configs, layers. */
  blobs: Map<Digest, Uint8Array>
}

/** Options of {@link buildImage}. */
export interface BuildImageOptions {
  /** Layer contents, in order. */
  layers: Uint8Array[]
  /** Media type given to every layer; default `application/vnd.oci.image.layer.v1.tar`. */
  layerMediaType?: string
  /** Platform written to the config and to the descriptor; default linux/amd64. */
  platform?: Platform
  /** Extra config fields (merged over the generated `architecture`, `os`, `rootfs`). */
  config?: Record<string, unknown>
  /** Manifest annotations. */
  annotations?: Record<string, string>
}

const encoder = new TextEncoder()

/** A descriptor for `bytes` with the given media type. */
export function describe(bytes: Uint8Array, mediaType: string): Descriptor {
  return { mediaType, digest: digestOf(bytes), size: bytes.byteLength }
}

/** Builds a single-platform OCI image manifest with its config and layers. */
export function buildImage(options: BuildImageOptions): BuiltImage {
  const platform = options.platform ?? { architecture: 'amd64', os: 'linux' }
  const layerMediaType = options.layerMediaType ?? OCI_LAYER_TAR
  const blobs = new Map<Digest, Uint8Array>()
  const layers = options.layers.map((bytes) => {
    const descriptor = describe(bytes, layerMediaType)
    blobs.set(descriptor.digest, bytes)
    return descriptor
  })
  const configBytes = encoder.encode(
    JSON.stringify({
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant === undefined ? {} : { variant: platform.variant }),
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      ...options.config
    })
  )
  const config = describe(configBytes, OCI_CONFIG)
  blobs.set(config.digest, configBytes)
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }
  if (options.annotations !== undefined) manifest.annotations = options.annotations
  const manifestBytes = encoder.encode(JSON.stringify(manifest))
  const root: Descriptor = { ...describe(manifestBytes, OCI_MANIFEST), platform }
  blobs.set(root.digest, manifestBytes)
  return { root, blobs }
}

/** Builds an OCI index over single-platform images; each child descriptor keeps its `platform`. */
export function buildIndex(images: BuiltImage[], annotations?: Record<string, string>): BuiltImage {
  const blobs = new Map<Digest, Uint8Array>()
  for (const image of images) for (const [digest, bytes] of image.blobs) blobs.set(digest, bytes)
  const index: ImageIndex = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: images.map((i) => i.root) }
  if (annotations !== undefined) index.annotations = annotations
  const bytes = encoder.encode(JSON.stringify(index))
  const root = describe(bytes, OCI_INDEX)
  blobs.set(root.digest, bytes)
  return { root, blobs }
}
