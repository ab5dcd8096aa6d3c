import assert from 'node:assert/strict'
import { createHash, randomFillSync } from 'node:crypto'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildImage, type Descriptor, walkImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { freePorts, waitFor } from '@kadmirror/test-support'
import parsePrometheus from 'parse-prometheus-text-format'
import { request } from 'undici'
import { type CliProcess, startCli } from './cli-process.ts'

interface Daemon {
  cli: CliProcess
  registry: string
  metrics: string
}

/** The value of a sample of a metric family, by labels. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const family = parsePrometheus(text).find((f: { name: string }) => f.name === name)
  const metric = family?.metrics.find((m: { labels?: Record<string, string> }) =>
    Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)
  )
  return metric === undefined ? undefined : Number(metric.value)
}

// These three run in gossip membership (mesh, the default, is what the e2e, interop and demo clusters run).
describe('three kadmirror registry daemons on loopback, in gossip membership', function () {
  this.timeout(90_000)
  let dir: string
  let daemons: Daemon[] = []
  const image = buildImage({
    layers: [randomFillSync(new Uint8Array(300_000)), randomFillSync(new Uint8Array(2_000_000))]
  })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-daemons-'))
    const ports = await freePorts(9)
    const routers = [0, 1, 2].map((i) => `/ip4/127.0.0.1/tcp/${ports[i * 3 + 1]}`)
    const seed = await openOciLayoutStore({ directory: join(dir, 'node-1') })
    await seed.addImage('registry.example.com/team/app:1.0', image)
    await seed.close()
    for (const i of [0, 1, 2]) {
      await mkdir(join(dir, `node-${i + 1}`), { recursive: true })
      const [registry, router, metrics] = ports.slice(i * 3, i * 3 + 3)
      const cli = startCli([
        'registry',
        '--bootstrap-kind=static',
        '--static-bootstrap-peers',
        ...routers.filter((_, j) => j !== i),
        `--registry-addr=127.0.0.1:${registry}`,
        `--router-addr=127.0.0.1:${router}`,
        `--metrics-addr=127.0.0.1:${metrics}`,
        `--store=oci-layout:${join(dir, `node-${i + 1}`)}`,
        `--data-dir=${join(dir, `data-${i + 1}`)}`,
        '--allow-loopback',
        '--membership=gossip',
        '--peer-connections=8',
        '--log-level=DEBUG',
        ...(i === 2 ? ['--registry-filters', '^blocked\\.example\\.com/'] : [])
      ])
      daemons.push({ cli, registry: `http://127.0.0.1:${registry}`, metrics: `http://127.0.0.1:${metrics}` })
    }
    for (const daemon of daemons) await daemon.cli.waitForLog(/"msg":"running kadmirror"/)
    await waitFor(
      async () =>
        (
          await Promise.all(daemons.map(async (d) => (await request(`${d.registry}/readyz`)).statusCode))
        ).every((s) => s === 200),
      30_000,
      'every daemon ready'
    )
  })

  after(async () => {
    await Promise.all(daemons.map((d) => d.cli.stop('SIGKILL')))
    daemons = []
    await rm(dir, { recursive: true, force: true })
  })

  it('serves a pull on node 3 with every blob from node 1, verified', async () => {
    const asker = daemons[2] as Daemon
    const ns = '?ns=registry.example.com'
    await waitFor(
      async () =>
        (await request(`${asker.registry}/v2/team/app/manifests/1.0${ns}`, { method: 'HEAD' })).statusCode ===
        200,
      20_000,
      'the tag advertised'
    )
    const load = async (descriptor: Descriptor): Promise<Uint8Array | undefined> => {
      const res = await request(`${asker.registry}/v2/team/app/manifests/${descriptor.digest}${ns}`)
      return res.statusCode === 200 ? new Uint8Array(await res.body.arrayBuffer()) : undefined
    }
    let blobs = 0
    for await (const entry of walkImage(image.root, load)) {
      if (entry.relation === 'root' || entry.relation === 'manifest') continue
      const res = await request(`${asker.registry}/v2/team/app/blobs/${entry.descriptor.digest}${ns}`)
      const body = Buffer.from(await res.body.arrayBuffer())
      assert.equal(res.statusCode, 200)
      assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, entry.descriptor.digest)
      blobs++
    }
    assert.equal(blobs, 3)
    const metrics = await (await request(`${asker.metrics}/metrics`)).body.text()
    assert.ok(
      (sample(metrics, 'spegel_mirror_requests_total', { registry: 'registry.example.com', cache: 'hit' }) ??
        0) >= 5,
      metrics
    )
    assert.ok((sample(metrics, 'kadmirror_mirror_bytes_total', { source: 'peer' }) ?? 0) >= 2_300_000)
    assert.ok((sample(metrics, 'spegel_mirror_last_success_timestamp_seconds') ?? 0) > Date.now() / 1000 - 60)
  })

  it('answers a blob nobody has with 404 and an OCI error body, and counts a miss', async () => {
    const asker = daemons[2] as Daemon
    const res = await request(
      `${asker.registry}/v2/team/app/blobs/sha256:${'0'.repeat(64)}?ns=registry.example.com`
    )
    assert.equal(res.statusCode, 404)
    assert.equal(
      ((await res.body.json()) as { errors: Array<{ code: string }> }).errors[0]?.code,
      'BLOB_UNKNOWN'
    )
    const metrics = await (await request(`${asker.metrics}/metrics`)).body.text()
    assert.ok(
      (sample(metrics, 'spegel_mirror_requests_total', { registry: 'registry.example.com', cache: 'miss' }) ??
        0) >= 1
    )
  })

  it('answers a filtered registry 404 without mirroring it, and counts it apart', async () => {
    const asker = daemons[2] as Daemon
    const res = await request(`${asker.registry}/v2/team/app/manifests/1.0?ns=blocked.example.com`)
    assert.equal(res.statusCode, 404)
    await res.body.dump()
    const metrics = await (await request(`${asker.metrics}/metrics`)).body.text()
    assert.equal(
      sample(metrics, 'spegel_mirror_requests_total', { registry: 'blocked.example.com' }),
      undefined
    )
    assert.equal(
      sample(metrics, 'kadmirror_mirror_responses_total', { kind: 'manifest', source: 'filtered' }),
      1
    )
  })

  it('sets the advertised gauges from the store of node 1, per registry', async () => {
    const metrics = await (await request(`${(daemons[0] as Daemon).metrics}/metrics`)).body.text()
    const labels = { registry: 'registry.example.com' }
    assert.equal(sample(metrics, 'spegel_advertised_image_tags', labels), 1)
    assert.equal(sample(metrics, 'spegel_advertised_image_digests', labels), 1)
    assert.equal(sample(metrics, 'spegel_advertised_content_digests', labels), 4)
    assert.equal(sample(metrics, 'kadmirror_router_peers'), 2)
  })

  it('exports libp2p’s own metrics beside Spegel’s and ours', async () => {
    const metrics = await (await request(`${(daemons[0] as Daemon).metrics}/metrics`)).body.text()
    assert.match(metrics, /^libp2p_\w+/m)
  })

  it('serves its peer id at /debug/web/metadata', async () => {
    const body = (await (
      await request(`${(daemons[0] as Daemon).metrics}/debug/web/metadata`)
    ).body.json()) as { libp2p: { id: string } }
    assert.match(body.libp2p.id, /^12D3Koo/)
  })

  it('logs one JSON line per mirror request, with Spegel’s level names', async () => {
    const line = await (daemons[2] as Daemon).cli.waitForLog(/"source":"peer".*"msg":"request"/)
    assert.equal(line.level, 'INFO')
    assert.match(String(line.method), /^(GET|HEAD)$/)
    assert.match(String(line.path), /^\/v2\/team\/app\//)
    assert.match(String(line.peer), /^12D3Koo/)
  })

  it('exits 0 on SIGTERM, removing nothing it should keep (the peer key)', async () => {
    const node = daemons[1] as Daemon
    const result = await node.cli.stop('SIGTERM')
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stderr, /"msg":"exit gracefully"/)
  })
})
