// The OCI distribution-spec conformance suite (github.com/opencontainers/distribution-spec/conformance, built from
// the Go module proxy), read-only pull workflow as Spegel's CI runs it: against a `kadmirror registry` holding the
// content in its embedded store, then against a second node that holds nothing and serves it from the first
// through the DHT. Needs Go; skips, saying why, without it.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { buildImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { waitFor } from '@kadmirror/test-support'
import { allReady, type Daemon, freePorts, startDaemon, stopDaemons } from '@kadmirror/test-support/daemons'

const run = promisify(execFile)
const MODULE = 'github.com/opencontainers/distribution-spec/conformance'
const VERSION = 'v0.0.0-20260831232431-97274622c111'
/** Tag requests carry no `?ns=` in the suite: they mean Docker Hub, so the image is named there. */
const REPOSITORY = 'conformance/test'
const TAG = 'v1'

/** Builds the suite's binary into `dir`; resolves its path, or undefined (with the reason printed) without Go. */
async function buildSuite(dir: string): Promise<string | undefined> {
  try {
    await run('go', ['version'])
  } catch {
    console.log('    skipped: the go command is not installed')
    return undefined
  }
  const env = { ...process.env, GOFLAGS: '-mod=mod' }
  const { stdout } = await run('go', ['mod', 'download', '-json', `${MODULE}@${VERSION}`], { env })
  const source = (JSON.parse(stdout) as { Dir: string }).Dir
  const binary = join(dir, 'oci-conformance')
  await run('go', ['build', '-o', binary, '.'], { cwd: source, env, timeout: 300_000 })
  return binary
}

/** Runs the suite against `registry` (host:port) and resolves its printed results. */
async function runSuite(
  binary: string,
  registry: string,
  digests: { manifest: string; blobs: string[] },
  results: string
) {
  const env = {
    ...process.env,
    OCI_REGISTRY: registry,
    OCI_TLS: 'disabled',
    OCI_REPO1: REPOSITORY,
    OCI_REPO2: REPOSITORY,
    OCI_API_PUSH: 'false',
    OCI_API_BLOBS_DELETE: 'false',
    OCI_API_MANIFESTS_DELETE: 'false',
    OCI_API_TAGS_DELETE: 'false',
    // The mirror serves neither tag lists nor referrers (a mirror does not: clients go upstream for them).
    OCI_API_TAGS_LIST: 'false',
    OCI_API_REFERRER: 'false',
    OCI_RO_DATA_TAGS: TAG,
    OCI_RO_DATA_MANIFESTS: digests.manifest,
    OCI_RO_DATA_BLOBS: digests.blobs.join(' '),
    OCI_RESULTS_DIR: results
  }
  // This version of the suite panics while writing results.yaml after a read-only run: its exit code says nothing,
  // the printed results do.
  const output = await run(binary, [], { env, timeout: 120_000 }).then(
    (r) => r.stdout,
    (err: { stdout?: string }) => err.stdout ?? ''
  )
  return output.slice(0, output.indexOf('\nConfiguration:'))
}

describe('OCI distribution-spec conformance (pull, read-only)', function () {
  this.timeout(600_000)
  let dir: string
  let binary: string | undefined
  let daemons: Daemon[] = []
  let digests: { manifest: string; blobs: string[] }

  before(async function () {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-oci-conformance-'))
    binary = await buildSuite(dir)
    if (binary === undefined) return this.skip()
    const layout = join(dir, 'holder')
    const store = await openOciLayoutStore({ directory: layout, create: true })
    const image = buildImage({
      layers: [
        new TextEncoder().encode('a conformance layer'),
        new Uint8Array(600_000).fill(7),
        new Uint8Array()
      ]
    })
    await store.addImage(`docker.io/${REPOSITORY}:${TAG}`, image)
    await store.close()
    digests = {
      manifest: image.root.digest,
      blobs: [...image.blobs.keys()].filter((d) => d !== image.root.digest)
    }
    await mkdir(join(dir, 'empty'))
    const [a, b, c, d, e, f] = await freePorts(6)
    const holder = await startDaemon({
      name: 'holder',
      store: layout,
      dataDir: join(dir, 'holder-data'),
      ports: { registry: a as number, router: b as number, metrics: c as number },
      peers: ['/ip4/127.0.0.1/tcp/1']
    })
    daemons.push(holder)
    const asker = await startDaemon({
      name: 'asker',
      store: join(dir, 'empty'),
      dataDir: join(dir, 'asker-data'),
      ports: { registry: d as number, router: e as number, metrics: f as number },
      peers: [`/ip4/127.0.0.1/tcp/${b}/p2p/${holder.peerId}`]
    })
    daemons.push(asker)
    await allReady(daemons)
    // The holder advertised alone; its records reach the asker's DHT once the two have met.
    await waitFor(
      async () => {
        const res = await fetch(`${asker.registryUrl}/v2/${REPOSITORY}/manifests/${digests.manifest}`)
        return res.status === 200
      },
      20_000,
      'the asker to find the image'
    )
  })

  after(async () => {
    await stopDaemons(daemons)
    daemons = []
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  for (const [which, index] of [
    ['the node that holds the content', 0],
    ['a node that serves it from a peer', 1]
  ] as const)
    it(`passes every pull check against ${which}`, async () => {
      const daemon = daemons[index] as Daemon
      const results = await runSuite(
        binary as string,
        new URL(daemon.registryUrl).host,
        digests,
        join(dir, `results-${index}`)
      )
      assert.match(results, /^OCI Conformance Test: Pass$/m, results)
      assert.doesNotMatch(results, /: FAIL$/im, results)
      const passed = results.match(/: Pass$/gm)?.length ?? 0
      assert.ok(passed >= 15, `only ${passed} checks passed:\n${results}`)
    })
})
