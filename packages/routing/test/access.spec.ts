import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  createAllowList,
  generatePrivateNetworkKey,
  InvalidAccessRuleError,
  type Libp2pRouter,
  parsePrivateNetworkKey,
  staticBootstrapper
} from '../src/index.ts'
import { startCluster, startNode, stopAll, waitFor } from './cluster.ts'

describe('allow lists', () => {
  it('allows an address inside one of its networks and refuses one outside', () => {
    const list = createAllowList(['10.0.0.0/8', 'fd00::/8', '192.0.2.7'])
    assert.equal(list.allows('10.1.2.3'), true)
    assert.equal(list.allows('::ffff:10.1.2.3'), true)
    assert.equal(list.allows('fd12::1'), true)
    assert.equal(list.allows('192.0.2.7'), true)
    assert.equal(list.allows('192.0.2.8'), false)
    assert.equal(list.allows('11.0.0.1'), false)
    assert.equal(list.allows('not an address'), false)
  })

  it('decides every IPv4 address of a /16 by its first two octets', () => {
    const list = createAllowList(['172.16.0.0/16'])
    fc.assert(
      fc.property(fc.ipV4(), (address) => {
        assert.equal(list.allows(address), address.startsWith('172.16.'))
      }),
      { numRuns: 2000 }
    )
  })

  for (const bad of [
    '10.0.0.0/33',
    '10.0.0/8',
    'fd00::/129',
    '10.0.0.0/8/1',
    'example.com',
    '',
    '10.0.0.0/x'
  ])
    it(`refuses ${JSON.stringify(bad)} with InvalidAccessRuleError`, () => {
      assert.throws(() => createAllowList([bad]), InvalidAccessRuleError)
    })

  it('refuses an empty list, which would allow no one', () => {
    assert.throws(() => createAllowList([]), InvalidAccessRuleError)
  })
})

describe('private-network keys', () => {
  it('generates keys in the swarm key format that it reads back as 32 random bytes each', () => {
    const a = generatePrivateNetworkKey()
    assert.match(a, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    assert.notEqual(a, generatePrivateNetworkKey())
    assert.equal(new TextDecoder().decode(parsePrivateNetworkKey(a)), a)
  })

  for (const bad of [
    '',
    'hello',
    '/key/swarm/psk/1.0.0/\n/base16/\n1234',
    `/key/swarm/psk/1.0.0/\n/base64/\n${'a'.repeat(64)}`
  ])
    it(`refuses ${JSON.stringify(bad.slice(0, 30))} as a key`, () => {
      assert.throws(() => parsePrivateNetworkKey(bad), InvalidAccessRuleError)
    })
})

describe('Libp2pRouter access', function () {
  this.timeout(30_000)
  let nodes: Libp2pRouter[] = []

  afterEach(async () => {
    await stopAll(nodes)
    nodes = []
  })

  /** Starts a node that bootstraps from `seed` and resolves whether it came to know it within a while. */
  async function joins(seed: Libp2pRouter, init: Parameters<typeof startNode>[0] = {}): Promise<boolean> {
    const joiner = await startNode({
      bootstrapper: staticBootstrapper(seed.addresses().map((a) => `${a}/p2p/${seed.peerId}`)),
      ...init
    })
    nodes.push(joiner)
    try {
      await waitFor(
        () => joiner.peers().includes(seed.peerId) && seed.peers().includes(joiner.peerId),
        3_000,
        'a join'
      )
      return true
    } catch {
      return false
    }
  }

  it('forms a private network of nodes holding the same key and finds keys in it', async () => {
    const privateNetworkKey = generatePrivateNetworkKey()
    nodes = await startCluster(3, { privateNetworkKey })
    const key = 'sha256:4444444444444444444444444444444444444444444444444444444444444444'
    await nodes[0]?.advertise([key])
    const found: string[] = []
    for await (const provider of (nodes[2] as Libp2pRouter).lookup(key)) found.push(provider.id)
    assert.deepEqual(found, [nodes[0]?.peerId])
  })

  it('lets no node without the key, or with another key, into a private network', async () => {
    const seed = await startNode({ privateNetworkKey: generatePrivateNetworkKey() })
    nodes.push(seed)
    assert.equal(await joins(seed), false)
    assert.equal(await joins(seed, { privateNetworkKey: generatePrivateNetworkKey() }), false)
  })

  it('refuses connections from outside its allowed networks, and accepts those inside', async () => {
    const closed = await startNode({ allowedNetworks: ['198.51.100.0/24'] })
    const open = await startNode({ allowedNetworks: ['127.0.0.0/8'] })
    nodes.push(closed, open)
    assert.equal(await joins(closed), false)
    assert.equal(await joins(open), true)
  })
})
