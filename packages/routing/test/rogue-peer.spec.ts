// A rogue libp2p peer that speaks every protocol a router answers — the stock DHT (Spegel's), lookups, provides,
// withdrawals and claims — with arbitrary bytes: the router ignores them (closing the stream), keeps serving lookups, and
// its memory stays bounded.
import assert from 'node:assert/strict'
import { collectGarbage } from '@kadmirror/test-support'
import fc from 'fast-check'
import { collectProviders } from '../src/conformance.ts'
import {
  CLAIM_PROTOCOL,
  DEFAULT_DHT_PROTOCOL,
  LOOKUP_PROTOCOL,
  PROVIDE_PROTOCOL,
  WITHDRAW_PROTOCOL
} from '../src/constants.ts'
import type { Libp2pRouter } from '../src/index.ts'
import { startCluster, stopAll, waitFor } from './cluster.ts'

/** A varint, as length prefixes are written. */
function varint(value: number): Uint8Array {
  const bytes: number[] = []
  let v = value
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  bytes.push(v)
  return Uint8Array.from(bytes)
}

/** Payloads a rogue peer sends: raw bytes, frames with any body, lengths far over any limit, endless varints. */
const payload = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }),
  fc.uint8Array({ maxLength: 512 }).map((body) => Uint8Array.from([...varint(body.length), ...body])),
  fc
    .tuple(fc.integer({ min: 1, max: 2 ** 40 }), fc.uint8Array({ maxLength: 64 }))
    .map(([length, body]) => Uint8Array.from([...varint(length), ...body])),
  fc.integer({ min: 1, max: 64 }).map((n) => new Uint8Array(n).fill(0xff)),
  fc
    .array(fc.uint8Array({ maxLength: 40 }), { maxLength: 20 })
    .map((frames) => Uint8Array.from(frames.flatMap((f) => [...varint(f.length), ...f])))
)

describe('a router under a rogue peer', function () {
  this.timeout(300_000)

  it('ignores arbitrary bytes on every protocol it answers, keeps serving lookups, and stays within memory', async () => {
    const [victim, rogue] = (await startCluster(2)) as [Libp2pRouter, Libp2pRouter]
    try {
      collectGarbage()
      const before = process.memoryUsage().heapUsed
      let opened = 0
      const protocols = [
        DEFAULT_DHT_PROTOCOL,
        LOOKUP_PROTOCOL,
        PROVIDE_PROTOCOL,
        WITHDRAW_PROTOCOL,
        CLAIM_PROTOCOL
      ]
      for (const protocol of protocols) {
        await fc.assert(
          fc.asyncProperty(payload, async (bytes) => {
            const stream = await rogue.libp2p.dialProtocol(victim.libp2p.peerId, protocol)
            opened++
            stream.send(bytes)
            await stream
              .close({ signal: AbortSignal.timeout(2000) })
              .catch(() => stream.abort(new Error('done')))
          }),
          { numRuns: 1000 }
        )
      }
      assert.equal(opened, 1000 * protocols.length)
      assert.ok(victim.peers().includes(rogue.peerId) || victim.peers().length === 0)
      const key = 'sha256:5555555555555555555555555555555555555555555555555555555555555555'
      await rogue.advertise([key])
      await waitFor(
        async () => (await collectProviders(victim, key)).length === 1,
        10_000,
        'a lookup after the rogue traffic'
      )
      collectGarbage()
      const grown = (process.memoryUsage().heapUsed - before) / 2 ** 20
      assert.ok(grown < 64, `the heap grew by ${grown.toFixed(1)} MiB`)
    } finally {
      await stopAll([victim, rogue])
    }
  })
})
