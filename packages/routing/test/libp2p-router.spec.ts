import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromMultihash, peerIdFromString } from '@libp2p/peer-id'
import { pbStream } from '@libp2p/utils'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import * as Digest from 'multiformats/hashes/digest'
import { collectProviders, routerConformance } from '../src/conformance.ts'
import { isOutOfFileDescriptors } from '../src/connections.ts'
import {
  createLibp2pRouter,
  InvalidPeerKeyError,
  keyToCid,
  type Libp2pRouter,
  LOOKUP_PROTOCOL,
  PEER_KEY_FILE,
  REGISTRY_INFO_PROTOCOL,
  staticBootstrapper
} from '../src/index.ts'
import { KadMessageCodec, MessageType } from '../src/kad-message.ts'
import { compareDistance, kadId, peerKadId } from '../src/keys.ts'
import { startCluster, startNode, stopAll, waitFor } from './cluster.ts'
import { spawnLineProcess } from './line-process.ts'

routerConformance('Libp2pRouter (3 nodes on 127.0.0.1)', {
  setup: (count) => startCluster(count),
  teardown: (routers) => stopAll(routers as Libp2pRouter[])
})

describe('Spegel key encoding', () => {
  // Vectors computed with go-cid (cid.Prefix{Version: 1, Codec: raw, MhType: SHA2_256}.Sum), as Spegel does.
  for (const [key, cid] of [
    [
      'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      'bafkreiadmttyx2evz34sjg4dwignwy3czu6dc72veqdgsysclc6ejgug7q'
    ],
    ['docker.io/library/nginx:latest', 'bafkreiegz3rmcceyush7i6qge34cakrebc2ysox7lx2yvyinqmlg43l3by'],
    ['registry.k8s.io/pause:3.10', 'bafkreidpommagbt7ghuu55nwtcdp2i33gs7fvorjda53wg5djocja57bzi'],
    ['', 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku']
  ] as const) {
    it(`encodes ${JSON.stringify(key)} as ${cid.slice(0, 16)}…`, () => {
      assert.equal(keyToCid(key).toString(), cid)
    })
  }
})

describe('Libp2pRouter cluster of 10 nodes', function () {
  this.timeout(60_000)
  let nodes: Libp2pRouter[]

  before(async () => {
    nodes = await startCluster(10)
  })

  after(async () => {
    await stopAll(nodes)
  })

  it('finds a key advertised on one node from every other node', async () => {
    const key = 'sha256:1111111111111111111111111111111111111111111111111111111111111111'
    await nodes[0]?.advertise([key])
    for (const node of nodes.slice(1)) {
      const providers = await collectProviders(node, key)
      assert.deepEqual(
        providers.map((p) => [p.id, p.connected]),
        [[nodes[0]?.peerId, true]]
      )
    }
  })
})

describe('Libp2pRouter connections', function () {
  this.timeout(30_000)

  it('keeps one connection per pair of nodes when both dial each other at once', async () => {
    const [a, b] = await Promise.all([startNode(), startNode()])
    try {
      const addressOf = (n: Libp2pRouter) => n.libp2p.getMultiaddrs()[0] as Multiaddr
      await Promise.all([
        a.libp2p.dial(addressOf(b), { force: true }),
        b.libp2p.dial(addressOf(a), { force: true })
      ])
      const open = (n: Libp2pRouter) => n.libp2p.getConnections().filter((c) => c.status === 'open')
      // Each dial resolves before the other side's connection is seen; then both sides keep the same one: the
      // connection the node with the smaller id dialled.
      const smaller = a.peerId < b.peerId ? a : b
      const larger = smaller === a ? b : a
      await waitFor(
        () =>
          open(smaller).length === 1 &&
          open(larger).length === 1 &&
          open(smaller)[0]?.direction === 'outbound' &&
          open(larger)[0]?.direction === 'inbound',
        10_000,
        'one connection, dialled by the smaller id, on each side'
      )
      await waitFor(() => a.peers().length === 1 && b.peers().length === 1, 10_000, 'both in each view')
    } finally {
      await stopAll([a, b])
    }
  })

  it('forms a cluster of 10 nodes with exactly one connection between each pair', async () => {
    const nodes = await startCluster(10)
    try {
      await waitFor(
        () => nodes.every((n) => n.libp2p.getConnections().filter((c) => c.status === 'open').length === 9),
        10_000,
        'nine connections on every node'
      )
    } finally {
      await stopAll(nodes)
    }
  })
})

describe('Libp2pRouter stock DHT table', function () {
  this.timeout(30_000)

  it('takes a peer that connected into the stock kad-dht table without pinging it first', async () => {
    const first = await startNode()
    const pings: string[] = []
    const ping = first.libp2p.services.ping as unknown as {
      ping(peer: unknown, options?: unknown): Promise<number>
    }
    const stockPing = ping.ping.bind(ping)
    ping.ping = (peer, options) => {
      pings.push(String(peer))
      return stockPing(peer, options)
    }
    const second = await startNode({
      bootstrapper: staticBootstrapper(first.addresses().map((a) => `${a}/p2p/${first.peerId}`))
    })
    try {
      // kad-dht tags each peer it adds to its table in the peer store.
      await waitFor(
        async () =>
          (
            await first.libp2p.peerStore.get(peerIdFromString(second.peerId)).catch(() => undefined)
          )?.tags.has('kad-peer') === true,
        10_000,
        'the second node in the first node’s stock table'
      )
      assert.deepEqual(pings, [])
    } finally {
      await stopAll([first, second])
    }
  })
})

describe('Libp2pRouter out of file descriptors', function () {
  this.timeout(60_000)

  it('recognises running out of file descriptors in a dial error and in the errors it wraps', () => {
    const emfile = Object.assign(new Error('connect EMFILE 127.0.0.1:5001'), { code: 'EMFILE' })
    assert.equal(isOutOfFileDescriptors(emfile), true)
    assert.equal(isOutOfFileDescriptors(new Error('dial failed', { cause: emfile })), true)
    assert.equal(isOutOfFileDescriptors(new AggregateError([new Error('refused'), emfile])), true)
    assert.equal(isOutOfFileDescriptors(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), false)
    assert.equal(isOutOfFileDescriptors('EMFILE'), false)
  })

  it('warns, once, that it is out of file descriptors when it cannot connect to the peers it learns of', async () => {
    const nodes = await startCluster(6)
    const starved = spawnLineProcess(process.execPath, [
      fileURLToPath(new URL('fixtures/router-process.ts', import.meta.url))
    ])
    try {
      // Room for the listener, the bootstrap connection and one more: the other peers cannot be dialled.
      await starved.request(JSON.stringify({ op: 'exhaust', keep: 3 }))
      const seed = nodes[0] as Libp2pRouter
      await starved.request(
        JSON.stringify({
          op: 'start',
          allowLoopback: true,
          logLevel: 'warn',
          bootstrap: seed.addresses().map((a) => `${a}/p2p/${seed.peerId}`)
        })
      )
      const warning = 'the process is out of file descriptors'
      await waitFor(() => starved.stderr().includes(warning), 30_000, 'the warning')
      await new Promise((resolve) => setTimeout(resolve, 3_000))
      assert.equal(starved.stderr().split(warning).length - 1, 1)
    } finally {
      starved.kill()
      await stopAll(nodes)
    }
  })
})

describe('Libp2pRouter lookups of providers the node is not connected to', function () {
  this.timeout(60_000)

  it('yields a provider it is not connected to, with the addresses its slow peer store has', async () => {
    // The owner stores its record at one peer only; the asker, no longer connected to the owner, asks the three
    // closest: two answer with nothing, the holder names a provider whose addresses only the peer store has.
    const nodes = await startCluster(5)
    const seed = nodes[0] as Libp2pRouter
    const owner = await startNode({
      replication: 1,
      bootstrapper: staticBootstrapper(seed.addresses().map((a) => `${a}/p2p/${seed.peerId}`))
    })
    nodes.push(owner)
    const asker = nodes[1] as Libp2pRouter
    try {
      await waitFor(() => nodes.every((n) => n.peers().length === 5), 20_000, 'a full mesh of 6 nodes')
      const others = nodes.filter((n) => n !== owner)
      const closestTo = (key: string): Libp2pRouter => {
        const target = kadId(keyToCid(key).multihash.bytes)
        const distance = (n: Libp2pRouter) => peerKadId(peerIdFromString(n.peerId))
        return others.reduce((a, b) => (compareDistance(distance(b), distance(a), target) < 0 ? b : a))
      }
      let key = ''
      do key = `sha256:${randomBytes(32).toString('hex')}`
      while (closestTo(key) === asker)
      await owner.advertise([key])
      await asker.libp2p.hangUp(peerIdFromString(owner.peerId))
      await waitFor(() => !asker.peers().includes(owner.peerId), 5_000, 'the owner to leave the asker’s view')
      // A slow peer store: the two empty answers arrive while the holder's provider is still being read, and the
      // lookup must not end (and drop that provider) before it is out.
      const peerStore = asker.libp2p.peerStore
      const get = peerStore.get.bind(peerStore)
      peerStore.get = async (id, options) => {
        if (id.toString() === owner.peerId) await new Promise((resolve) => setTimeout(resolve, 300))
        return get(id, options)
      }
      const providers = await collectProviders(asker, key)
      assert.deepEqual(
        providers.map((p) => [p.id, p.connected]),
        [[owner.peerId, false]]
      )
    } finally {
      await stopAll(nodes)
    }
  })
})

describe('Libp2pRouter lookup sharing', function () {
  this.timeout(30_000)

  it('serves concurrent lookups of one key, and a repeat within the cache time, from one network lookup', async () => {
    const nodes = await startCluster(4)
    try {
      const key = 'sha256:7777777777777777777777777777777777777777777777777777777777777777'
      await nodes[0]?.advertise([key])
      const asker = nodes[3] as Libp2pRouter
      const [first, second] = await Promise.all([collectProviders(asker, key), collectProviders(asker, key)])
      const third = await collectProviders(asker, key)
      assert.equal(first.length, 1)
      // One lookup fills one list of providers that every reader iterates: the same objects, not equal copies.
      assert.equal(first[0], second[0])
      assert.equal(first[0], third[0])
    } finally {
      await stopAll(nodes)
    }
  })
})

describe('Libp2pRouter lookup protocol', function () {
  this.timeout(30_000)

  it('answers GET_PROVIDERS on the lookup protocol with provider ids from its records, and no closer peers', async () => {
    const nodes = await startCluster(3)
    try {
      const [owner, holder, asker] = nodes as [Libp2pRouter, Libp2pRouter, Libp2pRouter]
      const key = 'sha256:8888888888888888888888888888888888888888888888888888888888888888'
      await owner.advertise([key])
      const stream = await asker.libp2p.dialProtocol(peerIdFromString(holder.peerId), LOOKUP_PROTOCOL)
      const messages = pbStream(stream).pb(KadMessageCodec)
      const mh = keyToCid(key).multihash.bytes
      await messages.write({ type: MessageType.GET_PROVIDERS, key: mh, closer: [], providers: [] })
      const answer = await messages.read()
      await messages.write({
        type: MessageType.GET_PROVIDERS,
        key: keyToCid('sha256:none').multihash.bytes,
        closer: [],
        providers: []
      })
      const miss = await messages.read()
      await stream.close()
      assert.deepEqual(
        answer.providers.map((p) => peerIdFromMultihash(Digest.decode(p.id)).toString()),
        [owner.peerId.toString()]
      )
      assert.deepEqual(answer.providers[0]?.multiaddrs, [])
      assert.deepEqual(answer.closer, [])
      assert.deepEqual(miss.providers, [])
    } finally {
      await stopAll(nodes)
    }
  })

  it('answers FIND_NODE on the lookup protocol with the peers of its view and the addresses they listen on', async () => {
    const nodes = await startCluster(4)
    try {
      const [asker, answering, ...others] = nodes as [Libp2pRouter, Libp2pRouter, ...Libp2pRouter[]]
      const stream = await asker.libp2p.dialProtocol(peerIdFromString(answering.peerId), LOOKUP_PROTOCOL)
      const messages = pbStream(stream).pb(KadMessageCodec)
      await messages.write({ type: MessageType.FIND_NODE, key: randomBytes(32), closer: [], providers: [] })
      const answer = await messages.read()
      await stream.close()
      const closer = new Map(
        answer.closer.map((p) => [
          peerIdFromMultihash(Digest.decode(p.id)).toString(),
          p.multiaddrs.map((bytes) => multiaddr(bytes).toString())
        ])
      )
      assert.deepEqual([...closer.keys()].sort(), [asker, ...others].map((n) => n.peerId).sort())
      for (const node of others) assert.deepEqual(closer.get(node.peerId), node.addresses())
    } finally {
      await stopAll(nodes)
    }
  })
})

describe('Libp2pRouter membership changes', function () {
  this.timeout(90_000)

  it('withdraws what it advertised when it closes cleanly, leaving no stale record for lookups', async () => {
    const nodes = await startCluster(4)
    const [owner, ...others] = nodes as [Libp2pRouter, ...Libp2pRouter[]]
    try {
      const key = 'sha256:3333333333333333333333333333333333333333333333333333333333333333'
      await owner.advertise([key])
      await owner.close()
      for (const node of others) assert.deepEqual(await collectProviders(node, key), [])
    } finally {
      await stopAll(nodes)
    }
  })

  it('still finds a key after three nodes die, and from a node that joins later', async () => {
    const nodes = await startCluster(10)
    const [owner, ...others] = nodes as [Libp2pRouter, ...Libp2pRouter[]]
    try {
      const key = 'sha256:2222222222222222222222222222222222222222222222222222222222222222'
      await owner.advertise([key])
      const dead = others.splice(0, 3)
      await stopAll(dead)
      await waitFor(
        () => others.every((n) => n.peers().length === others.length),
        10_000,
        'the dead nodes to leave every view'
      )
      for (const node of others)
        assert.deepEqual(
          (await collectProviders(node, key)).map((p) => p.id),
          [owner.peerId]
        )

      const late = await startNode({ bootstrapper: staticBootstrapper(others[0]?.addresses() ?? []) })
      others.push(late)
      await waitFor(() => late.peers().length === others.length, 20_000, 'the late node to know everyone')
      // A joiner may be among the closest peers before the holders have handed it the record: it finds the
      // key once the handoff lands (a lookup in between is a miss, which a mirror answers with a fallback).
      let found: string[] = []
      await waitFor(
        async () => {
          found = (await collectProviders(late, key)).map((p) => p.id)
          return found.length > 0
        },
        5_000,
        'the late node to find the key'
      )
      assert.deepEqual(found, [owner.peerId])
    } finally {
      await stopAll([owner, ...others])
    }
  })
})

describe('Libp2pRouter node identity and addresses', function () {
  this.timeout(30_000)
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-router-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps its peer id across restarts in a 0600 PEM key file, as Spegel writes it', async () => {
    const first = await startNode({ dataDir: dir })
    const id = first.peerId
    await first.close()
    const info = await stat(join(dir, PEER_KEY_FILE))
    assert.equal(info.mode & 0o777, 0o600)
    assert.match(await readFile(join(dir, PEER_KEY_FILE), 'utf8'), /^-----BEGIN PRIVATE KEY-----/)
    const second = await startNode({ dataDir: dir })
    assert.equal(second.peerId, id)
    await second.close()
  })

  it('refuses a key file that is not an Ed25519 key', async () => {
    await writeFile(join(dir, PEER_KEY_FILE), 'garbage')
    await assert.rejects(startNode({ dataDir: dir }), InvalidPeerKeyError)
  })

  it('does not announce loopback addresses unless told to', async () => {
    const node = await createLibp2pRouter({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    assert.deepEqual(node.addresses(), [])
    await node.close()
  })

  /** The registry URLs `b` (joining `a`) gives for a key `a` advertises; both nodes are stopped after. */
  const registryUrlsSeen = async (a: Libp2pRouter, b: Libp2pRouter, key: string): Promise<string[]> => {
    try {
      await waitFor(() => b.peers().length === 1, 10_000, 'b to join a')
      await a.advertise([key])
      await waitFor(async () => (await collectProviders(b, key)).length === 1, 5_000, 'the key to be found')
      return (await collectProviders(b, key)).map((p) => p.registryUrl)
    } finally {
      await stopAll([a, b])
    }
  }

  it('gives the registry port a peer announces in its provider URL', async () => {
    const a = await startNode({ registryPort: 6123 })
    const b = await startNode({ bootstrapper: staticBootstrapper(a.addresses()) })
    const key = 'sha256:3333333333333333333333333333333333333333333333333333333333333333'
    assert.deepEqual(await registryUrlsSeen(a, b, key), ['http://127.0.0.1:6123'])
  })

  it('assumes its own registry port for a peer that announces an invalid registry', async () => {
    const a = await startNode({ registryPort: 6124 })
    // Replace a's announcement with one whose port is out of range.
    await a.libp2p.unhandle(`${REGISTRY_INFO_PROTOCOL}/http/6124`)
    await a.libp2p.handle(`${REGISTRY_INFO_PROTOCOL}/http/70000`, (stream) =>
      stream.abort(new Error('unused'))
    )
    const b = await startNode({ registryPort: 5999, bootstrapper: staticBootstrapper(a.addresses()) })
    const key = 'sha256:3434343434343434343434343434343434343434343434343434343434343434'
    assert.deepEqual(await registryUrlsSeen(a, b, key), ['http://127.0.0.1:5999'])
  })

  it('keeps working after a peer sends garbage on the DHT protocol', async () => {
    const [a, b] = (await startCluster(2)) as [Libp2pRouter, Libp2pRouter]
    try {
      const stream = await b.libp2p.dialProtocol(a.libp2p.peerId, '/spegel/kad/1.0.0')
      stream.send(new Uint8Array([0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]))
      await stream.close().catch(() => {})
      const key = 'sha256:4444444444444444444444444444444444444444444444444444444444444444'
      await b.advertise([key])
      await waitFor(
        async () => (await collectProviders(a, key)).length === 1,
        5_000,
        'a lookup after the garbage'
      )
    } finally {
      await stopAll([a, b])
    }
  })
})
