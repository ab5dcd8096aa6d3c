import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  buildImage,
  buildIndex,
  type Descriptor,
  DOCKER_MANIFEST,
  digestOf,
  InvalidManifestError,
  isIndex,
  isIndexMediaType,
  isManifestMediaType,
  OCI_INDEX,
  OCI_MANIFEST,
  parseManifest,
  referencedDescriptors,
  walkImage
} from '../src/index.ts'

const bytes = (s: string) => new TextEncoder().encode(s)

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterable) out.push(item)
  return out
}

describe('media types', () => {
  it('tells manifests from indexes, ignoring parameters', () => {
    assert.ok(isManifestMediaType(`${OCI_MANIFEST}; charset=utf-8`))
    assert.ok(isManifestMediaType(DOCKER_MANIFEST))
    assert.ok(isIndexMediaType(OCI_INDEX))
    assert.ok(!isIndexMediaType(OCI_MANIFEST))
  })
})

describe('parseManifest', () => {
  it('parses a built image manifest', () => {
    const image = buildImage({ layers: [bytes('a'), bytes('b')] })
    const manifest = parseManifest(image.blobs.get(image.root.digest) as Uint8Array)
    assert.ok(!isIndex(manifest))
    assert.equal(manifest.layers.length, 2)
  })

  it('detects an index without a mediaType field from its manifests array', () => {
    const index = parseManifest(JSON.stringify({ schemaVersion: 2, manifests: [] }))
    assert.ok(isIndex(index))
  })

  for (const [why, json] of [
    ['invalid JSON', '{'],
    ['an array', '[]'],
    ['schemaVersion 1', '{"schemaVersion":1}'],
    [
      'a manifest without layers',
      `{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":{"mediaType":"x","digest":"${digestOf('')}","size":0}}`
    ],
    [
      'a descriptor with a bad digest',
      `{"schemaVersion":2,"mediaType":"${OCI_INDEX}","manifests":[{"mediaType":"x","digest":"sha256:1","size":1}]}`
    ],
    [
      'a negative size',
      `{"schemaVersion":2,"mediaType":"${OCI_INDEX}","manifests":[{"mediaType":"x","digest":"${digestOf('')}","size":-1}]}`
    ],
    ['an unknown media type', '{"schemaVersion":2,"mediaType":"text/plain"}']
  ] as const) {
    it(`rejects ${why}`, () => assert.throws(() => parseManifest(json), InvalidManifestError))
  }

  it('only ever throws InvalidManifestError for arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.json(), (json) => {
        try {
          parseManifest(json)
        } catch (err) {
          assert.ok(err instanceof InvalidManifestError, String(err))
        }
      }),
      { numRuns: 1000 }
    )
  })
})

describe('referencedDescriptors', () => {
  it('lists config, layers and subject of a manifest', () => {
    const image = buildImage({ layers: [bytes('l1')] })
    const subject: Descriptor = { mediaType: OCI_MANIFEST, digest: digestOf('s'), size: 1 }
    const manifest = { ...parseManifest(image.blobs.get(image.root.digest) as Uint8Array), subject }
    assert.deepEqual(
      referencedDescriptors(manifest).map((r) => r.relation),
      ['config', 'layer', 'subject']
    )
  })
})

describe('walkImage', () => {
  it('reaches every digest of a multi-platform index exactly once', async () => {
    const shared = bytes('shared layer')
    const amd = buildImage({
      layers: [shared, bytes('amd')],
      platform: { architecture: 'amd64', os: 'linux' }
    })
    const arm = buildImage({
      layers: [shared, bytes('arm')],
      platform: { architecture: 'arm64', os: 'linux' }
    })
    const index = buildIndex([amd, arm])
    const entries = await collect(walkImage(index.root, (d) => index.blobs.get(d.digest)))
    assert.deepEqual(new Set(entries.map((e) => e.descriptor.digest)), new Set(index.blobs.keys()))
    assert.equal(entries.length, index.blobs.size)
    assert.equal(entries[0]?.relation, 'root')
  })

  it('marks a child manifest the loader lacks as missing and does not descend into it', async () => {
    const amd = buildImage({ layers: [bytes('amd')] })
    const index = buildIndex([amd])
    const entries = await collect(
      walkImage(index.root, (d) => (d.digest === amd.root.digest ? undefined : index.blobs.get(d.digest)))
    )
    assert.deepEqual(
      entries.map((e) => [e.relation, e.missing ?? false]),
      [
        ['root', false],
        ['manifest', true]
      ]
    )
  })

  it('throws InvalidManifestError when a loaded manifest is not JSON', async () => {
    const image = buildImage({ layers: [] })
    await assert.rejects(collect(walkImage(image.root, () => bytes('garbage'))), InvalidManifestError)
  })
})
