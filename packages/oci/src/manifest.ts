/**
 * Manifests and indexes: parsing with validation, listing the descriptors they reference, and walking an
 * image from its root (index → child manifests → config + layers, and `subject`).
 */
import { type Digest, isDigest, truncate } from './digest.ts'
import { OciError } from './errors.ts'
import {
  isIndexMediaType,
  isManifestMediaType,
  isManifestOrIndexMediaType,
  OCI_INDEX,
  OCI_MANIFEST
} from './media-types.ts'

/** The platform of a manifest in an index. */
export interface Platform {
  architecture: string
  os: string
  variant?: string
  'os.version'?: string
  'os.features'?: string[]
}

/** An OCI content descriptor: what a manifest says about a piece of content. `size` is in bytes. */
export interface Descriptor {
  mediaType: string
  digest: Digest
  size: number
  annotations?: Record<string, string>
  platform?: Platform
  urls?: string[]
  artifactType?: string
}

/** A single-platform image manifest (OCI or Docker v2). */
export interface ImageManifest {
  schemaVersion: 2
  mediaType: string
  config: Descriptor
  layers: Descriptor[]
  subject?: Descriptor
  annotations?: Record<string, string>
  artifactType?: string
}

/** An image index (OCI index or Docker manifest list). */
export interface ImageIndex {
  schemaVersion: 2
  mediaType: string
  manifests: Descriptor[]
  subject?: Descriptor
  annotations?: Record<string, string>
  artifactType?: string
}

/** Either kind of manifest. */
export type Manifest = ImageManifest | ImageIndex

/** Thrown for bytes that are not a valid schema 2 manifest or index. Maps to `MANIFEST_INVALID`. */
export class InvalidManifestError extends OciError {
  override name = 'InvalidManifestError'

  constructor(reason: string) {
    super('MANIFEST_INVALID', `invalid manifest: ${reason}`)
  }
}

/** True when a parsed manifest is an index. */
export function isIndex(manifest: Manifest): manifest is ImageIndex {
  return 'manifests' in manifest
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkDescriptor(value: unknown, where: string): Descriptor {
  if (!isRecord(value)) throw new InvalidManifestError(`${where} is not an object`)
  const { mediaType, digest, size } = value
  if (typeof mediaType !== 'string' || mediaType === '')
    throw new InvalidManifestError(`${where}.mediaType is missing`)
  if (!isDigest(digest))
    throw new InvalidManifestError(
      `${where}.digest ${JSON.stringify(truncate(String(digest)))} is not a digest`
    )
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new InvalidManifestError(`${where}.size is not a non-negative integer`)
  }
  return value as unknown as Descriptor
}

/**
 * Parses and validates a manifest or index. The kind comes from the JSON's `mediaType`, else from
 * `mediaType` (for example a descriptor's or a Content-Type), else from the presence of `manifests`.
 * @throws {InvalidManifestError} for invalid JSON, a schemaVersion other than 2, or malformed descriptors.
 */
export function parseManifest(bytes: Uint8Array | string, mediaType?: string): Manifest {
  let value: unknown
  try {
    value = JSON.parse(
      typeof bytes === 'string'
        ? bytes
        : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
    )
  } catch (err) {
    throw new InvalidManifestError(`not JSON (${(err as Error).message})`)
  }
  if (!isRecord(value)) throw new InvalidManifestError('not a JSON object')
  if (value.schemaVersion !== 2) throw new InvalidManifestError('schemaVersion must be 2')
  const declared =
    typeof value.mediaType === 'string'
      ? value.mediaType
      : (mediaType ?? (Array.isArray(value.manifests) ? OCI_INDEX : OCI_MANIFEST))
  if (value.subject !== undefined) checkDescriptor(value.subject, 'subject')

  if (isIndexMediaType(declared)) {
    if (!Array.isArray(value.manifests)) throw new InvalidManifestError('index has no manifests array')
    for (const [i, d] of value.manifests.entries()) checkDescriptor(d, `manifests[${i}]`)
    return { ...value, mediaType: declared } as unknown as ImageIndex
  }
  if (isManifestMediaType(declared)) {
    checkDescriptor(value.config, 'config')
    if (!Array.isArray(value.layers)) throw new InvalidManifestError('manifest has no layers array')
    for (const [i, d] of value.layers.entries()) checkDescriptor(d, `layers[${i}]`)
    return { ...value, mediaType: declared } as unknown as ImageManifest
  }
  throw new InvalidManifestError(`unsupported media type ${JSON.stringify(truncate(declared))}`)
}

/** How a descriptor was reached from the root of a walk. */
export type Relation = 'root' | 'manifest' | 'config' | 'layer' | 'subject'

/** A descriptor a manifest refers to, and how. */
export interface Reference {
  descriptor: Descriptor
  relation: Exclude<Relation, 'root'>
}

/** Lists the descriptors a manifest or index refers to directly: an index's manifests, a manifest's config and layers, and either's subject. */
export function referencedDescriptors(manifest: Manifest): Reference[] {
  const out: Reference[] = isIndex(manifest)
    ? manifest.manifests.map((descriptor) => ({ descriptor, relation: 'manifest' as const }))
    : [
        { descriptor: manifest.config, relation: 'config' as const },
        ...manifest.layers.map((descriptor) => ({ descriptor, relation: 'layer' as const }))
      ]
  if (manifest.subject !== undefined) out.push({ descriptor: manifest.subject, relation: 'subject' })
  return out
}

/** One step of {@link walkImage}. */
export interface WalkEntry {
  descriptor: Descriptor
  relation: Relation
  /** The manifest or index this descriptor was listed in; undefined for the root. */
  parent?: Digest
  /** True for a manifest or index whose bytes the loader did not have: its children are not listed. */
  missing?: boolean
}

/**
 * Loads the bytes of a manifest or index, or undefined when they are not present. Only called for
 * descriptors with a manifest or index media type.
 */
export type ManifestLoader = (
  descriptor: Descriptor
) => Promise<Uint8Array | undefined> | Uint8Array | undefined

/**
 * Walks an image from its root descriptor, depth first, yielding every descriptor it reaches once
 * (the root, child manifests, configs, layers, subjects). Manifests are loaded with `load`; a missing one
 * is yielded with `missing: true`.
 * @throws {InvalidManifestError} when a loaded manifest is invalid.
 */
export async function* walkImage(root: Descriptor, load: ManifestLoader): AsyncGenerator<WalkEntry> {
  const seen = new Set<Digest>()
  const stack: WalkEntry[] = [{ descriptor: root, relation: 'root' }]
  while (stack.length > 0) {
    const entry = stack.pop() as WalkEntry
    if (seen.has(entry.descriptor.digest)) continue
    seen.add(entry.descriptor.digest)
    if (!isManifestOrIndexMediaType(entry.descriptor.mediaType)) {
      yield entry
      continue
    }
    const bytes = await load(entry.descriptor)
    if (bytes === undefined) {
      yield { ...entry, missing: true }
      continue
    }
    yield entry
    const children = referencedDescriptors(parseManifest(bytes, entry.descriptor.mediaType))
    for (let i = children.length - 1; i >= 0; i--) {
      const child = children[i] as Reference
      stack.push({ descriptor: child.descriptor, relation: child.relation, parent: entry.descriptor.digest })
    }
  }
}
