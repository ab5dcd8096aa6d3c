// End to end through real containerd: two containerd instances, two kadmirror nodes (ContainerdStore + mirror +
// libp2p router), an upstream docker-registry, all on 127.0.0.1; pulls with `ctr images pull --hosts-dir`.
import assert from 'node:assert/strict'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configureMirrors } from '@kadmirror/containerd'
import { waitFor } from '@kadmirror/test-support'
import { goUnavailable } from '@kadmirror/test-support/go-builds'
import {
  buildAndPush,
  CONTAINERD_VERSIONS,
  e2eUnavailable,
  type Host,
  type KadmirrorNode,
  mkdtemp,
  pushIndex,
  type Registry,
  rm,
  startHost,
  startLiar,
  startNode,
  startRegistry
} from './fixtures.ts'

const MiB = 1024 * 1024

for (const version of CONTAINERD_VERSIONS) {
  const why = e2eUnavailable()
  describe(`end to end through containerd ${version.name}`, function () {
    this.timeout(900_000)
    let work = ''
    let registry: Registry
    let a: Host
    let b: Host
    let nodeA: KadmirrorNode
    let nodeB: KadmirrorNode
    let big: string
    let bigDigest: string
    let small: string
    let multi: string

    before(async function () {
      const reason = why ?? (version.name === '1.6' ? undefined : await goUnavailable())
      if (reason !== undefined) {
        console.log(`    skipped: ${reason}`)
        this.skip()
      }
      const binaries = await version.binaries()
      work = await mkdtemp(join(tmpdir(), 'kadmirror-e2e-'))
      registry = await startRegistry(work)
      bigDigest = await buildAndPush(work, registry.host, 'e2e/big', '1', [50 * MiB, 30 * MiB, 20 * MiB])
      big = `${registry.host}/e2e/big:1`
      await buildAndPush(work, registry.host, 'e2e/small', '1', [64 * 1024])
      small = `${registry.host}/e2e/small:1`
      await pushIndex(work, registry.host, 'e2e/multi', '1')
      multi = `${registry.host}/e2e/multi:1`
      a = await startHost(work, 'a', binaries)
      b = await startHost(work, 'b', binaries)
      nodeA = await startNode(a.containerd, join(work, 'node-a'))
      nodeB = await startNode(b.containerd, join(work, 'node-b'), `${nodeA.addresses[0]}/p2p/${nodeA.peerId}`)
      await configureMirrors({
        configPath: a.hostsDir,
        registries: [`http://${registry.host}`],
        mirrorTargets: [nodeA.url]
      })
      await configureMirrors({
        configPath: b.hostsDir,
        registries: [`http://${registry.host}`],
        mirrorTargets: [nodeB.url]
      })
    })

    after(async () => {
      await Promise.all([nodeA?.stop(), nodeB?.stop()])
      await Promise.all([a?.containerd.stop(), b?.containerd.stop(), registry?.stop()])
      if (work !== '') await rm(work, { recursive: true, force: true })
    })

    /** Upstream requests made while `action` runs. */
    async function upstreamDuring(action: () => Promise<unknown>): Promise<string[]> {
      const before = registry.requests.length
      await action()
      await new Promise((resolve) => setTimeout(resolve, 200))
      return registry.requests.slice(before)
    }

    it('(1) node A pulls: its mirror answers 404 and containerd falls back to upstream', async () => {
      const seen = nodeA.responses.length
      const upstream = await upstreamDuring(() => a.pull(big))
      const answers = nodeA.responses.slice(seen)
      assert.ok(answers.length > 0, 'containerd asked the mirror first')
      assert.ok(answers.every((r) => r.status === 404 && r.source === 'miss'))
      assert.ok(upstream.some((line) => line.startsWith('GET /v2/e2e/big/blobs/')))
    })

    it('(2) node B pulls the same image and every blob comes from node A', async () => {
      await waitFor(
        async () =>
          (await fetch(`${nodeB.url}/v2/e2e/big/manifests/1?ns=${registry.host}`, { method: 'HEAD' })).ok,
        20_000,
        'node A to advertise the image'
      )
      const seen = nodeB.responses.length
      const upstream = await upstreamDuring(() => b.pull(big))
      const answers = nodeB.responses.slice(seen)
      const blobs = answers.filter((r) => r.kind === 'blob')
      assert.equal(blobs.length, 4, 'three layers and the config')
      assert.ok(blobs.every((r) => r.status === 200 && r.source === 'peer' && r.peer === nodeA.peerId))
      assert.deepEqual(
        upstream.filter((line) => line.includes('/blobs/')),
        [],
        'no blob from upstream'
      )
    })

    it('(3) with upstream stopped, node B still pulls an image node A has, by tag and by digest', async () => {
      await a.pull(small)
      await waitFor(
        async () =>
          (await fetch(`${nodeB.url}/v2/e2e/small/manifests/1?ns=${registry.host}`, { method: 'HEAD' })).ok,
        20_000,
        'node A to advertise the small image'
      )
      await b.remove(`${registry.host}/e2e/big`)
      assert.equal((await b.content()).has(bigDigest), false, 'node B no longer has the image')
      const seen = nodeB.responses.length
      await registry.stop()
      try {
        await b.pull(small)
        await b.pull(`${registry.host}/e2e/big@${bigDigest}`)
      } finally {
        await registry.start()
      }
      const served = nodeB.responses.slice(seen).filter((r) => r.kind === 'blob')
      assert.ok(served.length >= 6 && served.every((r) => r.source === 'peer'), 'every blob came from node A')
    })

    it('(4) an image deleted on node A is withdrawn, and node B falls back to upstream', async () => {
      await a.pull(multi)
      await waitFor(
        async () =>
          (await fetch(`${nodeB.url}/v2/e2e/multi/manifests/1?ns=${registry.host}`, { method: 'HEAD' })).ok,
        20_000,
        'node A to advertise the index'
      )
      await a.remove(`${registry.host}/e2e/multi`)
      await waitFor(
        async () =>
          (await fetch(`${nodeB.url}/v2/e2e/multi/manifests/1?ns=${registry.host}`, { method: 'HEAD' }))
            .status === 404,
        20_000,
        'the withdrawal to reach node B'
      )
      const upstream = await upstreamDuring(() => b.pull(multi))
      assert.ok(upstream.some((line) => line.startsWith('GET /v2/e2e/multi/')))
    })

    it('(5) after containerd restarts, node A re-lists and still serves its images', async () => {
      await a.containerd.restart()
      await b.remove(`${registry.host}/e2e/small`)
      await waitFor(
        async () =>
          (await fetch(`${nodeA.url}/v2/e2e/small/manifests/1?ns=${registry.host}`, { method: 'HEAD' })).ok,
        20_000,
        'node A to reconnect'
      )
      const seen = nodeB.responses.length
      const upstream = await upstreamDuring(() => b.pull(small))
      const blobs = nodeB.responses.slice(seen).filter((r) => r.kind === 'blob')
      assert.ok(blobs.length > 0 && blobs.every((r) => r.source === 'peer'), JSON.stringify(blobs))
      assert.deepEqual(
        upstream.filter((line) => line.includes('/blobs/')),
        []
      )
    })

    it('(6) with node A frozen (SIGSTOP), node B’s pull still completes from upstream within 30 s', async () => {
      await b.remove(`${registry.host}/e2e/big`)
      assert.equal((await b.content()).has(bigDigest), false, 'node B no longer has the image')
      nodeA.child.kill('SIGSTOP')
      try {
        const started = Date.now()
        const upstream = await upstreamDuring(() => b.pull(big))
        const took = Date.now() - started
        assert.ok(upstream.some((line) => line.startsWith('GET /v2/e2e/big/blobs/')))
        assert.ok(took < 30_000, `the pull took ${took} ms`)
        console.log(`      pull with node A frozen: ${took} ms`)
      } finally {
        nodeA.child.kill('SIGCONT')
      }
    })

    it('(7) a peer that serves wrong bytes for every blob does not make node B’s pull fail', async () => {
      await b.remove(`${registry.host}/e2e/big`)
      await a.remove(`${registry.host}/e2e/big`)
      const liar = await startLiar(registry.host, 'e2e/big', '1', `${nodeA.addresses[0]}/p2p/${nodeA.peerId}`)
      try {
        await waitFor(
          async () =>
            (
              await fetch(`${nodeB.url}/v2/e2e/big/blobs/${liar.digests[0]}?ns=${registry.host}`, {
                method: 'HEAD'
              })
            ).ok,
          20_000,
          'node B to find the lying peer'
        )
        const seen = nodeB.responses.length
        const upstream = await upstreamDuring(() => b.pull(big))
        assert.ok((await b.content()).has(bigDigest), 'node B has the image')
        const blobs = nodeB.responses.slice(seen).filter((r) => r.kind === 'blob' && r.method === 'GET')
        assert.ok(blobs.length > 0 && blobs.every((r) => r.status === 404), JSON.stringify(blobs))
        assert.ok(upstream.some((line) => line.startsWith('GET /v2/e2e/big/blobs/')))
        assert.ok(liar.served() > 0, 'the liar was asked')
      } finally {
        await liar.stop()
      }
    })
  })
}
