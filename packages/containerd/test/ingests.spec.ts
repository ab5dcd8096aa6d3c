import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Digest } from '@kadmirror/oci'
import { IngestDirectory } from '../src/ingests.ts'

const layer = `sha256:${'a'.repeat(64)}` as Digest
const config = `sha256:${'b'.repeat(64)}` as Digest

describe('containerd downloads in progress (ingest/)', () => {
  let contentDir: string
  beforeEach(async () => {
    contentDir = await mkdtemp(join(tmpdir(), 'kadmirror-ingests-'))
  })
  afterEach(async () => {
    await rm(contentDir, { recursive: true, force: true })
  })

  /** An ingest directory as containerd writes it: `ref`, `total` (unless undefined) and a `data` file. */
  async function ingest(name: string, ref: string, total: number | undefined): Promise<void> {
    const dir = join(contentDir, 'ingest', name)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'ref'), ref)
    if (total !== undefined) await writeFile(join(dir, 'total'), String(total))
    await writeFile(join(dir, 'data'), '')
  }

  it('finds the download of a digest in its namespace, with its data file and size', async () => {
    await ingest('h1', `k8s.io/1/layer-${layer}`, 1234)
    await ingest('h2', `k8s.io/1/config-${config}`, 56)
    const ingests = new IngestDirectory({ contentDir, namespace: 'k8s.io' })
    assert.deepEqual(await ingests.find(layer), {
      digest: layer,
      ref: `k8s.io/1/layer-${layer}`,
      dataPath: join(contentDir, 'ingest', 'h1', 'data'),
      totalBytes: 1234
    })
    assert.deepEqual((await ingests.list()).map((i) => i.digest).sort(), [layer, config].sort())
  })

  it('ignores other namespaces, refs that name no digest, and downloads of unknown size', async () => {
    await ingest('h1', `moby/1/layer-${layer}`, 1234)
    await ingest('h2', 'k8s.io/1/something-else', 10)
    await ingest('h3', `k8s.io/1/config-${config}`, undefined)
    const ingests = new IngestDirectory({ contentDir, namespace: 'k8s.io' })
    assert.deepEqual(await ingests.list(), [])
    assert.equal(await ingests.find(layer), undefined)
    assert.equal(await ingests.find(config), undefined)
  })

  it('sees nothing when containerd has no ingest directory yet, and a download once it appears', async () => {
    const ingests = new IngestDirectory({ contentDir, namespace: 'k8s.io' })
    assert.deepEqual(await ingests.list(), [])
    await ingest('h1', `k8s.io/1/layer-${layer}`, 1)
    assert.equal((await ingests.find(layer))?.totalBytes, 1)
  })

  it('finds a download whose expected size was written after its ref', async () => {
    await ingest('h1', `k8s.io/1/layer-${layer}`, undefined)
    const ingests = new IngestDirectory({ contentDir, namespace: 'k8s.io' })
    assert.equal(await ingests.find(layer), undefined)
    await writeFile(join(contentDir, 'ingest', 'h1', 'total'), '77')
    assert.equal((await ingests.find(layer))?.totalBytes, 77)
  })

  it('forgets a download whose directory is gone (committed)', async () => {
    await ingest('h1', `k8s.io/1/layer-${layer}`, 1)
    const ingests = new IngestDirectory({ contentDir, namespace: 'k8s.io' })
    assert.notEqual(await ingests.find(layer), undefined)
    await rm(join(contentDir, 'ingest', 'h1'), { recursive: true })
    assert.equal(await ingests.find(layer), undefined)
  })
})
