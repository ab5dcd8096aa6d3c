/**
 * Media types of OCI and Docker v2 manifests, indexes, configs and layers.
 */

/** OCI image manifest. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
/** OCI image index. */
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
/** OCI image config. */
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
/** OCI empty descriptor (`{}`), the config of artifacts. */
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json'
/** OCI uncompressed tar layer. */
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'
/** OCI gzip layer. */
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
/** OCI zstd layer. */
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd'
/** OCI non-distributable layers (deprecated by the spec, still found). */
export const OCI_LAYER_NONDISTRIBUTABLE_TAR = 'application/vnd.oci.image.layer.nondistributable.v1.tar'
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'
/** Docker v2 schema 2 manifest. */
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
/** Docker v2 manifest list. */
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
/** Docker image config. */
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
/** Docker gzip layer. */
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip'
/** Docker foreign (non-distributable) layer. */
export const DOCKER_FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'

/** Media types of single-platform manifests. */
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([OCI_MANIFEST, DOCKER_MANIFEST])
/** Media types of indexes (multi-platform lists). */
export const INDEX_MEDIA_TYPES: ReadonlySet<string> = new Set([OCI_INDEX, DOCKER_MANIFEST_LIST])
/** Media types of image configs. */
export const CONFIG_MEDIA_TYPES: ReadonlySet<string> = new Set([OCI_CONFIG, DOCKER_CONFIG])
/** Media types of layers. */
export const LAYER_MEDIA_TYPES: ReadonlySet<string> = new Set([
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
  OCI_LAYER_TAR_ZSTD,
  OCI_LAYER_NONDISTRIBUTABLE_TAR,
  OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP,
  OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD,
  DOCKER_LAYER,
  DOCKER_FOREIGN_LAYER
])

/** The `Accept` value a client sends to get any manifest or index, as containerd does. */
export const MANIFEST_ACCEPT = [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, '*/*'].join(
  ', '
)

/** Strips parameters (`; charset=…`) and lowercases a media type. */
function essence(mediaType: string): string {
  const semicolon = mediaType.indexOf(';')
  return (semicolon < 0 ? mediaType : mediaType.slice(0, semicolon)).trim().toLowerCase()
}

/** True for a single-platform manifest media type (OCI or Docker v2). */
export function isManifestMediaType(mediaType: string): boolean {
  return MANIFEST_MEDIA_TYPES.has(essence(mediaType))
}

/** True for an index media type (OCI index or Docker manifest list). */
export function isIndexMediaType(mediaType: string): boolean {
  return INDEX_MEDIA_TYPES.has(essence(mediaType))
}

/** True for a manifest or an index: content served from `/v2/<name>/manifests/`. */
export function isManifestOrIndexMediaType(mediaType: string): boolean {
  return isManifestMediaType(mediaType) || isIndexMediaType(mediaType)
}
