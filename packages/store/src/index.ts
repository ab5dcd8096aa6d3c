/**
 * @packageDocumentation
 * Where a node's image content lives. {@link ContentStore} is the interface the router advertises from and
 * the mirror serves from; {@link openOciLayoutStore} is the embedded default (an OCI image-layout
 * directory), {@link createMemoryStore} is for tests and embedding. Every implementation passes the suite
 * exported from `@kadmirror/store/conformance`.
 *
 * @example
 * ```ts
 * import { buildImage } from '@kadmirror/oci'
 * import { openOciLayoutStore } from '@kadmirror/store'
 *
 * const store = await openOciLayoutStore({ directory: '/var/lib/kadmirror/layout' })
 * await store.addImage('registry.example.com/app:1.0', buildImage({ layers: [new TextEncoder().encode('hello')] }))
 * for await (const { key } of store.keys()) console.log(key)
 * await store.close()
 * ```
 */
export {
  buildCatalog,
  type Catalog,
  type CatalogImage,
  type CatalogSource,
  diffCatalogs,
  imageName,
  LiveCatalog
} from './catalog.ts'
export type {
  ContentInfo,
  ContentReader,
  ContentStore,
  StoreEvent,
  StoreKey,
  SubscribeOptions
} from './content-store.ts'
export {
  ContentMismatchError,
  ContentNotFoundError,
  IncompleteImageError,
  InvalidLayoutError,
  StoreClosedError
} from './errors.ts'
export { fileContentReader, fileContentStream, isMissingFile, READ_HIGH_WATER_MARK } from './files.ts'
export { type FilteredStore, filterImages, type ImageFilter } from './filtered-store.ts'
export { createMemoryStore, type MemoryStore } from './memory-store.ts'
export {
  CONTAINERD_NAME_ANNOTATION,
  type ExpectedContent,
  MAX_MANIFEST_BYTES,
  type OciLayoutStore,
  type OciLayoutStoreInit,
  openOciLayoutStore,
  REF_NAME_ANNOTATION
} from './oci-layout-store.ts'
export { createSerialQueue } from './serial.ts'
