import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { KadIndex } from '../src/kad-index.ts'
import { closest } from '../src/strategy.ts'

const sha = (text: string): Uint8Array => createHash('sha256').update(text).digest()

interface Peer {
  key: string
  kad: Uint8Array
}

function indexOf(peers: Peer[]): KadIndex<Peer> {
  const index = new KadIndex<Peer>()
  for (const peer of peers) index.set(peer.key, peer.kad, peer)
  return index
}

const peersArb = fc.uniqueArray(
  fc
    .uint8Array({ minLength: 4, maxLength: 4 })
    .map((kad) => ({ key: Buffer.from(kad).toString('hex'), kad })),
  { selector: (peer) => peer.key, maxLength: 60 }
)

describe('KadIndex', () => {
  it('yields every value in the order a scan by XOR distance gives (property)', () => {
    fc.assert(
      fc.property(peersArb, fc.uint8Array({ minLength: 4, maxLength: 4 }), (peers, target) => {
        const keys = [...indexOf(peers).nearest(target)].map((peer) => peer.key)
        assert.deepEqual(
          keys,
          closest(peers, target, peers.length).map((peer) => peer.key)
        )
      })
    )
  })

  it('finds the closest of 10 000 sha256 ids as a full scan does', () => {
    const peers = Array.from({ length: 10_000 }, (_, i) => ({ key: `p${i}`, kad: sha(`p${i}`) }))
    const index = indexOf(peers)
    for (let t = 0; t < 20; t++) {
      const target = sha(`key-${t}`)
      assert.deepEqual(index.closest(target, 20), closest(peers, target, 20))
    }
  })

  it('forgets a deleted value and replaces a value set again under its id', () => {
    const index = indexOf([
      { key: 'a', kad: Uint8Array.of(1) },
      { key: 'b', kad: Uint8Array.of(2) }
    ])
    assert.equal(index.delete('a'), true)
    assert.equal(index.delete('a'), false)
    index.set('b', Uint8Array.of(200), { key: 'b', kad: Uint8Array.of(200) })
    assert.equal(index.size, 1)
    assert.deepEqual(index.closest(Uint8Array.of(255), 5), [{ key: 'b', kad: Uint8Array.of(200) }])
    assert.equal(index.has('a'), false)
  })

  it('answers an empty list when empty or asked for none', () => {
    assert.deepEqual(new KadIndex<Peer>().closest(sha('x'), 3), [])
    assert.deepEqual(indexOf([{ key: 'a', kad: sha('a') }]).closest(sha('x'), 0), [])
  })
})
