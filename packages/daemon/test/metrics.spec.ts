import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode } from '../src/node.ts'

describe('node metrics', function () {
  this.timeout(30_000)
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-metrics-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const scrape = async (libp2pMetrics?: boolean): Promise<string> => {
    const node = await createNode({
      store: { kind: 'oci-layout', directory: join(dir, String(libp2pMetrics ?? 'default')) },
      registry: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      router: { listen: ['/ip4/127.0.0.1/tcp/0'], allowLoopback: true },
      ...(libp2pMetrics === undefined ? {} : { libp2pMetrics })
    })
    try {
      return await (await fetch(`${node.metricsUrl}/metrics`)).text()
    } finally {
      await node.close()
    }
  }

  it('exports Spegel’s metrics, ours with their known labels at 0, and the process’s', async () => {
    const text = await scrape(false)
    assert.match(text, /^# TYPE spegel_mirror_requests_total counter$/m)
    assert.match(text, /^kadmirror_peer_failures_total\{kind="timeout"\} 0$/m)
    assert.match(text, /^process_resident_memory_bytes \d+/m)
  })

  it('leaves libp2p’s metrics out when told to', async () => {
    assert.doesNotMatch(await scrape(false), /^libp2p_/m)
  })
})
