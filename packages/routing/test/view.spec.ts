import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { toString as bytesToString } from 'uint8arrays/to-string'
import { LOOKUP_PROTOCOL, PROVIDE_PROTOCOL, REGISTRY_INFO_PROTOCOL } from '../src/constants.ts'
import type { RouterEventMap } from '../src/events.ts'
import { MessageType } from '../src/kad-message.ts'
import { keyToCid } from '../src/keys.ts'
import { lookupAnswerer } from '../src/lookup-server.ts'
import { ProviderDatastore } from '../src/provider-datastore.ts'
import { announcedRegistry, ClusterView } from '../src/view.ts'

const DHT = '/spegel/kad/1.0.0'
const newPeer = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

function view(allowLoopback = false) {
  const events = new EventEmitter<RouterEventMap>()
  const joins: string[] = []
  const leaves: string[] = []
  events.on('peer:join', (e) => joins.push(`${e.peer}:${e.kadmirror}`))
  events.on('peer:leave', (e) => leaves.push(e.peer))
  const v = new ClusterView({
    protocol: DHT,
    registry: { port: 5000, scheme: 'http' },
    allowLoopback,
    events,
    log: pino({ level: 'silent' })
  })
  return { v, joins, leaves }
}

describe('cluster view', () => {
  it('reads a registry announcement and refuses a malformed one', () => {
    assert.deepEqual(announcedRegistry([`${REGISTRY_INFO_PROTOCOL}/https/5443`]), {
      scheme: 'https',
      port: 5443
    })
    assert.equal(announcedRegistry(['/ipfs/id/1.0.0']), undefined)
    for (const bad of ['ftp/21', 'http/0', 'http/70000', 'http/abc'])
      assert.ok(announcedRegistry([`${REGISTRY_INFO_PROTOCOL}/${bad}`]) instanceof Error, bad)
  })

  it('admits a peer that speaks the DHT once, telling whether it is a kadmirror node, and reports it leaving', async () => {
    const { v, joins, leaves } = view()
    const kadmirror = await newPeer()
    const spegel = await newPeer()
    assert.ok(v.admit(kadmirror, [DHT, LOOKUP_PROTOCOL, PROVIDE_PROTOCOL]))
    assert.equal(v.admit(kadmirror, [DHT, LOOKUP_PROTOCOL]), undefined)
    assert.ok(v.admit(spegel, [DHT]))
    assert.equal(v.admit(await newPeer(), ['/ipfs/ping/1.0.0']), undefined)
    assert.deepEqual(joins, [`${kadmirror}:true`, `${spegel}:false`])
    assert.equal(v.get(kadmirror.toString())?.batches, true)
    assert.equal(v.get(spegel.toString())?.batches, false)
    v.remove(spegel.toString())
    v.remove(spegel.toString())
    assert.deepEqual(leaves, [spegel.toString()])
    assert.deepEqual(v.ids(), [kadmirror.toString()])
  })

  it('gives a provider the registry it announced, or this node’s port, at its first usable address', async () => {
    const { v } = view()
    const announced = await newPeer()
    v.admit(announced, [DHT, `${REGISTRY_INFO_PROTOCOL}/https/6000`])
    const addresses = [multiaddr('/ip4/127.0.0.1/tcp/5001'), multiaddr('/ip6/fd00::5/tcp/5001')]
    assert.equal(v.registryUrl(announced.toString(), addresses), 'https://[fd00::5]:6000')
    assert.equal(
      v.registryUrl((await newPeer()).toString(), [multiaddr('/ip4/10.0.0.7/tcp/5001')]),
      'http://10.0.0.7:5000'
    )
    assert.equal(v.toProvider('x', [multiaddr('/ip4/127.0.0.1/tcp/5001')]), undefined)
    assert.equal(
      view(true).v.registryUrl('x', [multiaddr('/ip4/127.0.0.1/tcp/5001')]),
      'http://127.0.0.1:5000'
    )
  })

  it('orders members by distance to a target', async () => {
    const { v } = view()
    for (let i = 0; i < 10; i++) v.admit(await newPeer(), [DHT])
    const target = new Uint8Array(32)
    const closest = v.closest(target, 3)
    assert.equal(closest.length, 3)
    assert.ok(closest.every((m) => v.has(m.key)))
  })
})

describe('lookup protocol answers', () => {
  it('answers GET_PROVIDERS from the provider index with ids only, and FIND_NODE from the view with addresses', async () => {
    const { v } = view()
    const datastore = new ProviderDatastore({ validityMs: 60_000 })
    const holder = await newPeer()
    const member = await newPeer()
    v.admit(member, [DHT], [multiaddr('/ip4/10.0.0.9/tcp/5001')])
    const mh = keyToCid('sha256:aa').multihash.bytes
    datastore.putProvider(bytesToString(mh, 'base32'), holder.toString(), Date.now())
    const answer = lookupAnswerer(datastore, v)
    const providers = answer({ type: MessageType.GET_PROVIDERS, key: mh, closer: [], providers: [] })
    assert.deepEqual(
      providers.providers.map((p) => [Buffer.from(p.id).toString('hex'), p.multiaddrs.length]),
      [[Buffer.from(holder.toMultihash().bytes).toString('hex'), 0]]
    )
    assert.deepEqual(providers.closer, [])
    const nodes = answer({ type: MessageType.FIND_NODE, key: new Uint8Array(32), closer: [], providers: [] })
    assert.equal(nodes.closer.length, 1)
    assert.equal(nodes.closer[0]?.multiaddrs.length, 1)
    const empty = answer({ type: MessageType.PING, closer: [], providers: [] })
    assert.deepEqual([empty.closer, empty.providers], [[], []])
  })

  it('leaves out providers known to be gone, and serves them again once they are back', async () => {
    const { v } = view()
    const datastore = new ProviderDatastore({ validityMs: 60_000 })
    const holder = await newPeer()
    const mh = keyToCid('sha256:bb').multihash.bytes
    datastore.putProvider(bytesToString(mh, 'base32'), holder.toString(), Date.now())
    let dead = true
    const answer = lookupAnswerer(datastore, v, (peer) => dead && peer === holder.toString())
    const ask = () =>
      answer({ type: MessageType.GET_PROVIDERS, key: mh, closer: [], providers: [] }).providers
    assert.equal(ask().length, 0)
    dead = false
    assert.equal(ask().length, 1)
  })
})
