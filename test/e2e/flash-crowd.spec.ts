// Flash crowd through real containerd: three containerd instances, each with a kadmirror node (the daemon's
// createNode, flash crowd on by default), pull the same new image at once from a slow upstream (a throttling proxy in
// front of docker-registry). Each blob should come from upstream about once: one node is elected per blob, the
// others receive its download from it while it arrives.
import assert from 'node:assert/strict'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configureMirrors } from '@kadmirror/containerd'
import { waitFor } from '@kadmirror/test-support'
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
  startLiar,
  startNode,
  startRegistry
} from './fixtures.ts'

const MiB = 1024 * 1024
const LAYERS = [8 * MiB, 6 * MiB, 4 * MiB]
/** The upstream's uplink: the image alone takes about 4 s. */
const UPSTREAM_BYTES_PER_SECOND = 5 * MiB

/** Three containerd hosts, each with a kadmirror node (the first one the others' bootstrap) mirroring `upstream`. */
interface Crowd {
  hosts: Host[]
  nodes: KadmirrorNode[]
  stop(): Promise<void>
}

async function startCrowd(
  work: string,
  name: string,
  upstream: string,
  binaries?: Parameters<typeof startHost>[2]
): Promise<Crowd> {
  const crowd: Crowd = {
    hosts: [],
    nodes: [],
    async stop() {
      await Promise.all(crowd.nodes.map((n) => n.stop()))
      await Promise.all(crowd.hosts.map((h) => h.containerd.stop()))
    }
  }
  try {
    for (const host of ['a', 'b', 'c'].map((n) => `${name}-${n}`)) {
      crowd.hosts.push(await startHost(work, host, binaries))
      const first = crowd.nodes[0]
      const seed = first === undefined ? undefined : `${first.addresses[0]}/p2p/${first.peerId}`
      const node = await startNode((crowd.hosts.at(-1) as Host).containerd, join(work, `node-${host}`), seed)
      crowd.nodes.push(node)
      await configureMirrors({
        configPath: (crowd.hosts.at(-1) as Host).hostsDir,
        registries: [`http://${upstream}`],
        mirrorTargets: [node.url]
      })
    }
    return crowd
  } catch (err) {
    await crowd.stop()
    throw err
  }
}

/** Upstream blob bytes served since `from` (an index into the access log) ÷ the image's bytes. */
function upstreamShare(registry: Registry, from: number, sizes: Map<string, number>): number {
  const gets = registry.requests.slice(from).filter((r) => r.startsWith('GET ') && r.includes('/blobs/'))
  let bytes = 0
  for (const get of gets) bytes += sizes.get(get.slice(get.lastIndexOf('/') + 1)) ?? 0
  return bytes / [...sizes.values()].reduce((a, b) => a + b, 0)
}

async function holdsAll(hosts: Host[], sizes: Map<string, number>): Promise<void> {
  for (const host of hosts) {
    const content = await host.content()
    for (const digest of sizes.keys()) assert.ok(content.has(digest), `a node lacks ${digest}`)
  }
}

for (const version of CONTAINERD_VERSIONS) {
  describe(`flash crowd through containerd ${version.name}`, function () {
    this.timeout(600_000)
    let work = ''
    let registry: Registry
    let proxy: ThrottleProxy
    let crowd: Crowd | undefined
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
      crowd = await startCrowd(work, 'crowd', proxy.host, binaries)
    })

    after(async () => {
      await crowd?.stop()
      await proxy?.stop()
      await registry?.stop()
      if (work !== '') await rm(work, { recursive: true, force: true })
    })

    it('pulls an image on three nodes at once with each blob from upstream about once', async () => {
      const { hosts, nodes } = crowd as Crowd
      const from = registry.requests.length
      const times = await Promise.all(hosts.map((h) => h.pull(`${proxy.host}/e2e/crowd:1`)))
      const share = upstreamShare(registry, from, sizes)
      const peerAnswers = nodes
        .flatMap((n) => n.responses)
        .filter((r) => r.kind === 'blob' && r.source === 'peer')
      console.log(
        `      upstream served ${share.toFixed(2)} × the image; ${peerAnswers.length} blobs from peers; ` +
          `pulls ${times.map((t) => (t / 1000).toFixed(1)).join(' / ')} s`
      )
      assert.ok(share <= 2, `upstream served ${share.toFixed(2)} × the image`)
      assert.ok(peerAnswers.length >= sizes.size, 'too few blobs came from peers')
      await holdsAll(hosts, sizes)
    })
  })
}

// What goes wrong, on Debian's containerd only (the mechanism is the mirror's; both versions pull alike above).
describe('flash crowd failures through containerd 1.6', function () {
  this.timeout(600_000)
  let work = ''
  let registry: Registry
  let proxy: ThrottleProxy
  const stops: Array<() => Promise<void>> = []

  before(async function () {
    const reason = e2eUnavailable()
    if (reason !== undefined) {
      console.log(`    skipped: ${reason}`)
      this.skip()
    }
    work = await mkdtemp(join(tmpdir(), 'kadmirror-crowd-fail-'))
    registry = await startRegistry(work)
    proxy = await startThrottleProxy(registry.host, UPSTREAM_BYTES_PER_SECOND)
  })
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop()
  })
  after(async () => {
    await proxy?.stop()
    await registry?.stop()
    if (work !== '') await rm(work, { recursive: true, force: true })
  })

  /** Pushes a new image `e2e/<name>:1` and starts a crowd for it; resolves its reference through the proxy and sizes. */
  async function newCrowd(
    name: string
  ): Promise<{ crowd: Crowd; reference: string; sizes: Map<string, number> }> {
    await buildAndPush(work, registry.host, `e2e/${name}`, '1', LAYERS)
    const crowd = await startCrowd(work, name, proxy.host)
    stops.push(() => crowd.stop())
    return {
      crowd,
      reference: `${proxy.host}/e2e/${name}:1`,
      sizes: await blobSizes(registry.host, `e2e/${name}`, '1')
    }
  }

  it('pulls the image on every node when the elected node’s mirror dies as its download starts', async () => {
    const { crowd, reference, sizes } = await newCrowd('crowd-dies')
    const started = performance.now()
    const pulls = crowd.hosts.map((h) => h.pull(reference))
    await waitFor(() => crowd.nodes.some((n) => n.upstreams.some((e) => e.elected)), 30_000, 'an election')
    const victim = crowd.nodes.find((n) => n.upstreams.some((e) => e.elected)) as KadmirrorNode
    victim.child.kill('SIGKILL')
    const killedAt = performance.now() - started
    const times = await Promise.all(pulls)
    console.log(
      `      killed the elected node's mirror at ${(killedAt / 1000).toFixed(1)} s; ` +
        `pulls ${times.map((t) => (t / 1000).toFixed(1)).join(' / ')} s`
    )
    await holdsAll(crowd.hosts, sizes)
  })

  it('pulls the right bytes when a peer claims every blob at its arbiter and serves zeros for them', async () => {
    const { crowd, reference, sizes } = await newCrowd('crowd-liar')
    const first = crowd.nodes[0] as KadmirrorNode
    const liar = await startLiar(
      registry.host,
      'e2e/crowd-liar',
      '1',
      `${first.addresses[0]}/p2p/${first.peerId}`,
      'claimer',
      crowd.nodes.length
    )
    stops.push(() => liar.stop())
    const from = registry.requests.length
    const times = await Promise.all(crowd.hosts.map((h) => h.pull(reference)))
    console.log(
      `      the liar answered ${liar.served()} blob GETs; upstream served ` +
        `${upstreamShare(registry, from, sizes).toFixed(2)} × the image; pulls ` +
        `${times.map((t) => (t / 1000).toFixed(1)).join(' / ')} s`
    )
    assert.ok(liar.served() > 0, 'no node asked the claimer')
    await holdsAll(crowd.hosts, sizes)
    // The zeros were caught before they reached containerd: answered 404 ('failed'), the client went upstream.
    const refused = crowd.nodes.flatMap((n) => n.responses).filter((r) => r.source === 'failed')
    assert.ok(refused.length > 0, 'no transfer from the claimer was refused')
  })
})
