/**
 * @packageDocumentation
 * The OCI vocabulary every kadmirror package speaks: image references, digests, media types, the
 * distribution API's pull paths and Range headers, OCI error bodies, and manifest walking.
 * Every parser throws one typed error (a subclass of {@link OciError}) for bad input, never another exception.
 *
 * @example
 * ```ts
 * import { parseReference, formatReference, parseDistributionPath } from '@kadmirror/oci'
 *
 * formatReference(parseReference('nginx')) // 'docker.io/library/nginx:latest'
 * parseDistributionPath('/v2/library/nginx/manifests/latest?ns=docker.io')
 * // { kind: 'manifest', repository: 'library/nginx', tag: 'latest', registry: 'docker.io' }
 * ```
 */
export {
  createDigester,
  type Digest,
  type DigestAlgorithm,
  type Digester,
  digestAlgorithm,
  digestHex,
  digestOf,
  InvalidDigestError,
  isDigest,
  parseDigest
} from './digest.ts'
export {
  isOciErrorCode,
  OCI_ERROR_MESSAGE,
  OCI_ERROR_STATUS,
  OciError,
  type OciErrorBody,
  type OciErrorCode,
  type OciErrorEntry,
  ociErrorBody
} from './errors.ts'
export { type BuildImageOptions, type BuiltImage, buildImage, buildIndex, describe } from './image.ts'
export {
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  InvalidManifestError,
  isIndex,
  type Manifest,
  type ManifestLoader,
  type Platform,
  parseManifest,
  type Reference,
  type Relation,
  referencedDescriptors,
  type WalkEntry,
  walkImage
} from './manifest.ts'
export * from './media-types.ts'
export {
  type BasePath,
  type BlobPath,
  type DistributionPath,
  formatDistributionPath,
  InvalidPathError,
  MAX_DISTRIBUTION_PATH_LENGTH,
  type ManifestPath,
  parseDistributionPath,
  referenceOfPath
} from './paths.ts'
export {
  type ByteRange,
  formatContentRange,
  formatRange,
  InvalidRangeError,
  MultipleRangesError,
  parseRange,
  RangeNotSatisfiableError,
  type RangeSpec,
  resolveRange
} from './range.ts'
export {
  DEFAULT_NAMESPACE,
  DEFAULT_REGISTRY,
  DEFAULT_TAG,
  formatReference,
  type ImageReference,
  InvalidReferenceError,
  isReference,
  isRegistryHost,
  MAX_REPOSITORY_LENGTH,
  type ParseReferenceOptions,
  parseReference,
  REPOSITORY_PATTERN,
  TAG_PATTERN,
  tagKey
} from './reference.ts'
