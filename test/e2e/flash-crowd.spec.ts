// Flash crowd through real containerd: three containerd instances, each with a kadmirror node (the daemon's
// createNode, flash crowd on by default), pull the same new image at once from a slow upstream (a throttling proxy in
// front of docker-registry). Each blob should come from upstream about once: one node is elected per blob, the
// others receive its download from it while it arrives.
import assert from 'node:assert/strict'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configureMirrors } from '@kadmirror/containerd'
import { goUnavailable } from '@kadmirror/test-support/go-builds'
import { startThrottleProxy, type ThrottleProxy } from '@kadmirror/test-support/throttle-proxy'
import {
  blobSizes,
  buildAndPush,
  CONTAINERD_VERSIONS,
  e2eUnavailable,
  type Host,
  type KadmirrorNode,
  mkdtemp,
  type Registry,
  rm,
  startHost,
  startNode,
  startRegistry
} from './fixtures.ts'

const MiB = 1024 * 1024
const LAYERS = [8 * MiB, 6 * MiB, 4 * MiB]
/** The upstream's uplink: the image alone takes about 4 s. */
const UPSTREAM_BYTES_PER_SECOND = 5 * MiB

for (const version of CONTAINERD_VERSIONS) {
  describe(`flash crowd through containerd ${version.name}`, function () {
    this.timeout(600_000)
    let work = ''
    let registry: Registry
    let proxy: ThrottleProxy
    const hosts: Host[] = []
    const nodes: KadmirrorNode[] = []
    let sizes: Map<string, number>

    before(async function () {
      const reason = e2eUnavailable() ?? (version.name === '1.6' ? undefined : await goUnavailable())
      if (reason !== undefined) {
        console.log(`    skipped: ${reason}`)
        this.skip()
      }
      const binaries = await version.binaries()
      work = await mkdtemp(join(tmpdir(), 'kadmirror-crowd-'))
      registry = await startRegistry(work)
      await buildAndPush(work, registry.host, 'e2e/crowd', '1', LAYERS)
      proxy = await startThrottleProxy(registry.host, UPSTREAM_BYTES_PER_SECOND)
      sizes = await blobSizes(registry.host, 'e2e/crowd', '1')
      for (const name of ['a', 'b', 'c']) {
        const host = await startHost(work, name, binaries)
        hosts.push(host)
        const seed = nodes[0] === undefined ? undefined : `${nodes[0].addresses[0]}/p2p/${nodes[0].peerId}`
        nodes.push(await startNode(host.containerd, join(work, `node-${name}`), seed))
        await configureMirrors({
          configPath: host.hostsDir,
          registries: [`http://${proxy.host}`],
          mirrorTargets: [(nodes.at(-1) as KadmirrorNode).url]
        })
      }
    })

    after(async () => {
      await Promise.all(nodes.map((n) => n.stop()))
      await Promise.all(hosts.map((h) => h.containerd.stop()))
      await proxy?.stop()
      await registry?.stop()
      if (work !== '') await rm(work, { recursive: true, force: true })
    })

    it('pulls an image on three nodes at once with each blob from upstream about once', async () => {
      registry.requests.length = 0
      const times = await Promise.all(hosts.map((h) => h.pull(`${proxy.host}/e2e/crowd:1`)))
      const gets = registry.requests.filter((r) => r.startsWith('GET ') && r.includes('/blobs/'))
      let upstreamBytes = 0
      for (const get of gets) upstreamBytes += sizes.get(get.slice(get.lastIndexOf('/') + 1)) ?? 0
      const imageBytes = [...sizes.values()].reduce((a, b) => a + b, 0)
      const peerAnswers = nodes
        .flatMap((n) => n.responses)
        .filter((r) => r.kind === 'blob' && r.source === 'peer')
      console.log(
        `      upstream served ${(upstreamBytes / imageBytes).toFixed(2)} × the image (${gets.length} blob GETs for ` +
          `${sizes.size} blobs); ${peerAnswers.length} blobs from peers; pulls ${times.map((t) => (t / 1000).toFixed(1)).join(' / ')} s`
      )
      assert.ok(
        upstreamBytes <= 2 * imageBytes,
        `upstream served ${upstreamBytes} bytes for a ${imageBytes}-byte image`
      )
      assert.ok(peerAnswers.length >= sizes.size, 'too few blobs came from peers')
      for (const host of hosts)
        for (const digest of sizes.keys()) assert.ok((await host.content()).has(digest))
    })
  })
}
