import assert from 'node:assert/strict'
import { collectProviders, routerConformance } from '../src/conformance.ts'
import { keyToCid, type Libp2pRouter } from '../src/index.ts'
import { startCluster, stopAll } from './cluster.ts'

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
        providers.map((p) => p.id),
        [nodes[0]?.peerId]
      )
    }
  })
})
