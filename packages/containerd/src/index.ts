/**
 * @packageDocumentation
 * kadmirror meets containerd: {@link openContainerdStore} is a ContentStore over containerd's gRPC API (images,
 * content, events), and {@link configureMirrors} / {@link cleanupMirrors} write and restore the `hosts.toml`
 * files that point containerd at the mirror.
 */
export {
  type ContainerdClient,
  createContainerdClient,
  type WireDescriptor,
  type WireImage
} from './client.ts'
export {
  type ContainerdStore,
  type ContainerdStoreInit,
  type ContentReadMode,
  DEFAULT_CONTAINERD_ADDRESS,
  DEFAULT_CONTAINERD_NAMESPACE,
  DEFAULT_CONTENT_DIR,
  openContainerdStore
} from './containerd-store.ts'
export {
  BACKUP_DIR,
  cleanupMirrors,
  configureMirrors,
  DEFAULT_HOST_DIR,
  DEFAULT_MIRROR_TARGET,
  DEFAULT_REGISTRY_CONFIG_PATH,
  DIAL_TIMEOUT,
  InvalidMirrorConfigError,
  type MirrorConfig,
  parseMirroredRegistries,
  renderHostsToml
} from './hosts.ts'
export { type Ingest, IngestDirectory, type IngestDirectoryInit } from './ingests.ts'
