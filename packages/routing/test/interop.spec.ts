// A node that speaks only the stock DHT protocol — js-libp2p's own kad-dht server on `/spegel/kad/1.0.0`,
// none of kadmirror's protocols, as a Spegel node — shares one DHT with kadmirror nodes.
import assert from 'node:assert/strict'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { type KadDHT, kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { collectProviders } from '../src/conformance.ts'
import { keyToCid, type Libp2pRouter } from '../src/index.ts'
import { startCluster, stopAll, waitFor } from './cluster.ts'

async function stockNode(): Promise<Libp2p<{ dht: KadDHT }>> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/spegel/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper })
    }
  })
}

describe('interop with a stock kad-dht node on /spegel/kad/1.0.0', function () {
  this.timeout(60_000)
  let nodes: Libp2pRouter[]
  let stock: Libp2p<{ dht: KadDHT }>

  before(async () => {
    nodes = await startCluster(3, { registryPort: 5055 })
    stock = await stockNode()
    for (const node of nodes) await stock.dial(multiaddr(`${node.addresses()[0]}/p2p/${node.peerId}`))
    await waitFor(
      () => nodes.every((n) => n.peers().includes(stock.peerId.toString())),
      10_000,
      'the stock node to join every view'
    )
  })

  after(async () => {
    await stock?.stop()
    await stopAll(nodes)
  })

  it('finds, with the stock query, a key a kadmirror node advertised', async () => {
    const key = 'sha256:5555555555555555555555555555555555555555555555555555555555555555'
    await nodes[0]?.advertise([key])
    const found = new Set<string>()
    for await (const event of stock.services.dht.findProviders(keyToCid(key), {
      signal: AbortSignal.timeout(10_000)
    })) {
      if (event.name === 'PROVIDER') for (const provider of event.providers) found.add(provider.id.toString())
      if (found.size > 0) break
    }
    assert.deepEqual([...found], [nodes[0]?.peerId])
  })

  it('finds a key the stock node provided, assuming its registry port is ours', async () => {
    const key = 'docker.io/library/nginx:1.27'
    for await (const _ of stock.services.dht.provide(keyToCid(key), {
      signal: AbortSignal.timeout(10_000)
    })) {
      // drain the query
    }
    const providers = await collectProviders(nodes[1] as Libp2pRouter, key)
    assert.deepEqual(
      providers.map((p) => [p.id, p.registryUrl]),
      [[stock.peerId.toString(), 'http://127.0.0.1:5055']]
    )
  })
})
