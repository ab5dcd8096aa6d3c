/** Writes a built image as an OCI image layout directory, and that directory as a tar archive (`ctr import`). */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { BuiltImage, Descriptor } from '@kadmirror/oci'
import { tarOf } from './layer.ts'
import { directoryEntries } from './rootfs.ts'

/** Writes `image` under `dir` (replaced) with `index.json` naming it `tag` (and `name` for containerd). */
export async function writeImageLayout(
  dir: string,
  image: BuiltImage,
  names: { tag: string; name: string }
): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
  for (const [digest, bytes] of image.blobs)
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes)
  const root: Descriptor = {
    ...image.root,
    annotations: { 'org.opencontainers.image.ref.name': names.tag, 'io.containerd.image.name': names.name }
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [root] }))
}

/** A reproducible tar of the layout directory `dir` (sorted, fixed time), written to `file`. */
export async function writeLayoutArchive(dir: string, file: string, mtime: Date): Promise<void> {
  await writeFile(file, await tarOf(await directoryEntries(dir, ''), mtime))
}
