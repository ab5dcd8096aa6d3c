import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { freePorts, waitFor } from '@kadmirror/test-support'
import type { KadmirrorNode } from '../src/node.ts'
import { installed, loopbackNode } from './loopback.ts'

interface Panel {
  title: string
  targets: Array<{ expr: string }>
}

const dashboardPath = new URL('../../../deploy/grafana/kadmirror.json', import.meta.url)

describe('the Grafana dashboard against a real Prometheus scraping running daemons', function () {
  this.timeout(120_000)
  const prometheus = installed('prometheus')
  let dir: string
  let nodes: KadmirrorNode[] = []
  let server: ChildProcess | undefined
  let api: string

  before(async function () {
    if (prometheus === undefined) {
      console.log('      skipped: prometheus is not installed (apt-get install prometheus)')
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-prometheus-'))
    const image = buildImage({
      layers: [randomFillSync(new Uint8Array(100_000)), randomFillSync(new Uint8Array(50_000))]
    })
    const store = await openOciLayoutStore({ directory: join(dir, 'a') })
    await store.addImage('registry.example.com/team/app:1.0', image)
    await store.close()
    const holder = await loopbackNode(join(dir, 'a'))
    const asker = await loopbackNode(join(dir, 'b'), holder)
    nodes = [holder, asker]
    await waitFor(async () => (await holder.ready()) && (await asker.ready()), 20_000, 'both nodes ready')
    const [port] = await freePorts(1)
    api = `http://127.0.0.1:${port}`
    const targets = nodes.map((n) => `'${new URL(n.metricsUrl as string).host}'`).join(', ')
    await writeFile(
      join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kadmirror\n    static_configs:\n      - targets: [${targets}]\n`
    )
    server = spawn(
      prometheus as string,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`
      ],
      { stdio: 'ignore' }
    )
    // Both targets up, with a few scrapes behind them (rates need two samples).
    await waitFor(
      async () => (await query('count(up == 1)'))[0]?.value[1] === '2',
      30_000,
      'prometheus scraping both daemons'
    )
    // Traffic once Prometheus scrapes, so rates see it: a pull from a peer, a miss, local hits.
    const ns = '?ns=registry.example.com'
    await waitFor(
      async () =>
        (await fetch(`${asker.registryUrl}/v2/team/app/manifests/1.0${ns}`, { method: 'HEAD' })).status ===
        200,
      20_000,
      'the image found through the DHT'
    )
    // Twice, a few scrapes apart: a series that appears with its first value has no rate until it grows again.
    for (const round of [1, 2]) {
      for (const digest of image.blobs.keys()) {
        await (await fetch(`${asker.registryUrl}/v2/team/app/blobs/${digest}${ns}`)).arrayBuffer()
        await (await fetch(`${holder.registryUrl}/v2/team/app/blobs/${digest}${ns}`)).arrayBuffer()
      }
      await (
        await fetch(`${asker.registryUrl}/v2/team/app/blobs/sha256:${'0'.repeat(64)}${ns}`)
      ).arrayBuffer()
      if (round === 1) await new Promise((resolve) => setTimeout(resolve, 2500))
    }
    await new Promise((resolve) => setTimeout(resolve, 4000))
  })

  after(async () => {
    server?.kill('SIGTERM')
    await Promise.all(nodes.map((n) => n.close()))
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  async function query(expr: string): Promise<Array<{ value: [number, string] }>> {
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`).catch(() => undefined)
    // Unreachable, or 503 while Prometheus starts: no data yet.
    if (res === undefined || res.status !== 200) return []
    const body = (await res.json()) as {
      status: string
      error?: string
      data?: { result: Array<{ value: [number, string] }> }
    }
    assert.equal(body.status, 'success', `${expr}: ${body.error}`)
    return body.data?.result ?? []
  }

  it('returns data for every query of every panel', async () => {
    const dashboard = JSON.parse(await readFile(dashboardPath, 'utf8')) as { panels: Panel[] }
    assert.ok(dashboard.panels.length >= 8)
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        const expr = target.expr.replaceAll('$__rate_interval', '30s')
        const result = await query(expr)
        assert.ok(result.length > 0, `“${panel.title}”: ${expr} returned no data`)
        assert.ok(
          result.some((r) => r.value[1] !== 'NaN'),
          `“${panel.title}”: ${expr} returned only NaN`
        )
      }
    }
  })

  it('sees the hits that came from a peer and the miss in Spegel’s request counter', async () => {
    const hits = await query('sum(spegel_mirror_requests_total{cache="hit"})')
    const misses = await query('sum(spegel_mirror_requests_total{cache="miss"})')
    // The HEAD of the tag and the four blobs, and the blob nobody has.
    assert.ok(Number(hits[0]?.value[1]) >= 5, JSON.stringify(hits))
    assert.ok(Number(misses[0]?.value[1]) >= 1, JSON.stringify(misses))
  })
})
