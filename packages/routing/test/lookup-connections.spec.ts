import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { DATAGRAM_FAILURES_BEFORE_STREAMS } from '../src/constants.ts'
import type { DatagramAddress, DatagramLookups } from '../src/datagrams.ts'
import { RequestTimeoutError } from '../src/errors.ts'
import { lookupConnections } from '../src/gossip-mode.ts'
import { type KadMessage, MessageType } from '../src/kad-message.ts'
import type { RouterLibp2p } from '../src/libp2p-node.ts'
import type { ClusterView, Member } from '../src/view.ts'

const ADDRESS: DatagramAddress = { family: 4, host: '10.0.0.2', port: 5001 }
const MESSAGE: KadMessage = { type: MessageType.GET_PROVIDERS, closer: [], providers: [] }

/** Lookup connections over fakes: `peer` is a member with a datagram address and no connection; dials are counted. */
function fakes(peer: PeerId, answers: () => Promise<KadMessage>) {
  const dials: unknown[] = []
  const libp2p = {
    getConnections: () => [],
    dial: (target: unknown) => {
      dials.push(target)
      return Promise.resolve({})
    }
  } as unknown as RouterLibp2p
  const member = { datagrams: [ADDRESS] } as unknown as Member
  const view = {
    get: (id: string) => (id === peer.toString() ? member : undefined),
    dialTarget: (p: PeerId) => p
  } as unknown as ClusterView
  const datagrams = { reaches: () => true, request: answers } as unknown as DatagramLookups
  return { dials, ...lookupConnections(libp2p, view, 1000, datagrams) }
}

describe('lookup connections in gossip mode', () => {
  let peer: PeerId
  before(async () => {
    peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  })

  it('asks a member with a datagram address in a datagram, with no dial', async () => {
    const lookups = fakes(peer, () => Promise.resolve(MESSAGE))
    assert.equal(lookups.connected(peer), true)
    assert.equal(lookups.open(peer), undefined)
    assert.deepEqual(await lookups.askByDatagram(peer, MESSAGE), MESSAGE)
    assert.equal(lookups.dials.length, 0)
  })

  it('dials a member that left its last datagrams unanswered instead', async () => {
    const lookups = fakes(peer, () => Promise.reject(new RequestTimeoutError('lost')))
    for (let i = 0; i < DATAGRAM_FAILURES_BEFORE_STREAMS; i++)
      await assert.rejects(lookups.askByDatagram(peer, MESSAGE) as Promise<KadMessage>, RequestTimeoutError)
    assert.equal(lookups.connected(peer), false)
    assert.equal(lookups.askByDatagram(peer, MESSAGE), undefined)
    await lookups.open(peer)
    assert.equal(lookups.dials.length, 1)
  })
})
