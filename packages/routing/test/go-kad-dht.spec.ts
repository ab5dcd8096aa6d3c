// kadmirror and go-libp2p-kad-dht configured exactly as Spegel configures it (see spegel-go/main.go) share one
// DHT. Spegel's node never announces loopback addresses, so both run in a network namespace made by this test,
// on 192.0.2.1 (TEST-NET-1, which exists only inside it). Needs root, iproute2 and Go; skips, saying why,
// where one is missing.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Provider } from '../src/index.ts'
import { waitFor } from './cluster.ts'
import { type LineProcess, spawnLineProcess } from './line-process.ts'

const run = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))
const namespace = `kadmirror-go-${process.pid}`
const ADDRESS = '192.0.2.1'

async function missing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'it needs root to make a network namespace'
  for (const [tool, args] of [
    ['ip', ['-V']],
    ['go', ['version']]
  ] as const) {
    try {
      await run(tool, [...args])
    } catch {
      return `the ${tool} command is not installed`
    }
  }
  return undefined
}

describe('interop with go-libp2p-kad-dht configured as Spegel', function () {
  this.timeout(600_000)
  let dir: string | undefined
  let goNode: LineProcess | undefined
  let ours: LineProcess | undefined
  let netnsMade = false
  let go: { ID: string; Addrs: string[] }
  let self: { peerId: string; addresses: string[] }

  before(async function () {
    const reason = await missing()
    if (reason !== undefined) {
      console.log(`    skipped: ${reason}`)
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-go-'))
    const binary = join(dir, 'spegel-go')
    await run('go', ['build', '-o', binary, '.'], { cwd: join(here, 'spegel-go'), timeout: 540_000 })
    await run('ip', ['netns', 'add', namespace])
    netnsMade = true
    const inNs = (...args: string[]) => run('ip', ['-n', namespace, ...args])
    // The namespace's own lo carries 192.0.2.1: not a loopback-range address, so neither side filters it.
    await inNs('link', 'set', 'lo', 'up')
    await inNs('addr', 'add', `${ADDRESS}/32`, 'dev', 'lo')

    goNode = spawnLineProcess('ip', ['netns', 'exec', namespace, binary, `/ip4/${ADDRESS}/tcp/0`])
    go = await goNode.request('id')
    ours = spawnLineProcess('ip', [
      'netns',
      'exec',
      namespace,
      process.execPath,
      join(here, 'fixtures', 'router-process.ts')
    ])
    self = await ours.request(
      JSON.stringify({
        op: 'start',
        listen: [`/ip4/${ADDRESS}/tcp/0`],
        bootstrap: go.Addrs.map((a) => `${a}/p2p/${go.ID}`),
        registryPort: 5000
      })
    )
    await waitFor(
      async () =>
        (await ours?.request<{ peers: string[] }>('{"op":"peers"}'))?.peers.includes(go.ID) === true,
      20_000,
      'the nodes to connect'
    )
    await waitFor(
      async () => ((await goNode?.request<number>('peers')) ?? 0) > 0,
      20_000,
      'the Go node’s routing table to hold ours'
    )
  })

  after(async () => {
    await ours?.request('{"op":"stop"}', 5_000).catch(() => {})
    ours?.kill()
    goNode?.kill()
    if (netnsMade) await run('ip', ['netns', 'del', namespace]).catch(() => {})
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('announces no loopback address on either side', () => {
    assert.ok(
      self.addresses.every((a) => a.startsWith(`/ip4/${ADDRESS}/`)),
      self.addresses.join(' ')
    )
    assert.ok(
      go.Addrs.every((a) => a.startsWith(`/ip4/${ADDRESS}/`)),
      go.Addrs.join(' ')
    )
  })

  it('lets the Go node find a digest kadmirror advertised', async () => {
    const key = 'sha256:6666666666666666666666666666666666666666666666666666666666666666'
    await ours?.request(JSON.stringify({ op: 'advertise', keys: [key] }))
    const found = await goNode?.request<Array<{ ID: string }>>(`find ${key}`)
    assert.deepEqual(
      found?.map((p) => p.ID),
      [self.peerId]
    )
  })

  it('finds a tag the Go node provided, with its address and our registry port', async () => {
    const key = 'docker.io/library/nginx:1.27'
    assert.equal(await goNode?.request(`provide ${key}`), 'ok')
    const { providers } = (await ours?.request<{ providers: Provider[] }>(
      JSON.stringify({ op: 'lookup', key })
    )) ?? { providers: [] }
    assert.deepEqual(
      providers.map((p) => [p.id, p.registryUrl]),
      [[go.ID, `http://${ADDRESS}:5000`]]
    )
  })
})
