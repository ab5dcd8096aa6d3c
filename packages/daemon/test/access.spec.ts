import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parsePrivateNetworkKey } from '@kadmirror/routing'
import { pino } from 'pino'
import { REGISTRY_OPTIONS } from '../src/options.ts'
import { registryNodeOptions } from '../src/registry-command.ts'
import { OptionValues, resolveOptions } from '../src/resolve.ts'
import { runCli } from './cli-process.ts'

const LOCAL = ['--bootstrap-kind=static', '--static-bootstrap-peers', '/ip4/127.0.0.1/tcp/1']

describe('kadmirror access flags', function () {
  this.timeout(60_000)
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-access-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function nodeOptions(flags: Record<string, string | string[]>) {
    const values = new OptionValues(
      resolveOptions(REGISTRY_OPTIONS, {
        flags: { 'bootstrap-kind': 'static', 'static-bootstrap-peers': ['/ip4/127.0.0.1/tcp/1'], ...flags },
        env: {}
      })
    )
    return registryNodeOptions(values, pino({ level: 'silent' }))
  }

  it('prints a new private-network key with generate-psk', async () => {
    const result = await runCli(['generate-psk'])
    assert.equal(result.code, 0, result.stderr)
    assert.doesNotThrow(() => parsePrivateNetworkKey(result.stdout))
  })

  it('asks two peer hosts to agree on a tag by default, and one in a private network', async () => {
    assert.equal((await nodeOptions({})).mirror?.tagQuorum, 2)
    const file = join(dir, 'swarm.key')
    await writeFile(file, (await runCli(['generate-psk'])).stdout, { mode: 0o600 })
    const options = await nodeOptions({ 'private-network-key-file': file })
    assert.equal(options.mirror?.tagQuorum, 1)
    assert.match(options.router?.privateNetworkKey ?? '', /^\/key\/swarm\/psk\/1\.0\.0\//)
    assert.equal((await nodeOptions({ 'tag-quorum': '3' })).mirror?.tagQuorum, 3)
    assert.equal((await nodeOptions({ 'allow-loopback': true } as never)).mirror?.tagQuorum, 1)
  })

  it('spools blobs from peers under the data dir, and forwards them as they arrive when told', async () => {
    const options = await nodeOptions({ 'data-dir': dir })
    assert.equal(options.mirror?.verifyBeforeForwarding, true)
    assert.equal(options.mirror?.spoolDir, join(dir, 'spool'))
    const forwarding = await nodeOptions({ 'verify-before-forwarding': 'false' } as never)
    assert.equal(forwarding.mirror?.verifyBeforeForwarding, false)
  })

  it('hands the allowed networks to the router and the mirror', async () => {
    const options = await nodeOptions({
      'router-allowed-networks': ['10.0.0.0/8'],
      'registry-allowed-networks': ['10.1.0.0/16', 'fd00::/8']
    })
    assert.deepEqual(options.router?.allowedNetworks, ['10.0.0.0/8'])
    assert.deepEqual(options.registry?.allowedNetworks, ['10.1.0.0/16', 'fd00::/8'])
  })

  it('refuses a bad network, key file or tag quorum in one line with exit 2', async () => {
    await writeFile(join(dir, 'not-a-key'), 'hello\n')
    const cases: Array<[string[], RegExp]> = [
      [['--router-allowed-networks', '10.0.0.0/99'], /--router-allowed-networks: .*not an IP network/],
      [['--registry-allowed-networks', 'example.com'], /--registry-allowed-networks: .*not an IP network/],
      [['--private-network-key-file', join(dir, 'missing')], /--private-network-key-file: cannot read/],
      [['--private-network-key-file', join(dir, 'not-a-key')], /not a private-network key/],
      [['--tag-quorum', 'zero'], /--tag-quorum: "zero"/]
    ]
    for (const [args, pattern] of cases) {
      const result = await runCli(['registry', ...LOCAL, ...args])
      assert.equal(result.code, 2, result.stderr)
      assert.match(result.stderr.split('\n')[0] as string, pattern)
    }
  })
})
