import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import { digestOf } from '@kadmirror/oci'
import { type BlobSink, receiveBlob, type TransferContext } from '../src/blob-transfer.ts'
import { HashPool } from '../src/hash-pool.ts'
import { undiciBody } from '../src/peer-body.ts'
import type { PeerFetchConfig } from '../src/peer-fetch.ts'
import { LatencyWindow, PeerAvoidList } from '../src/peers.ts'

describe('blob transfer', () => {
  it('neither blames the peer nor asks another when its own sink fails (a full disk)', async () => {
    const bytes = Buffer.alloc(64 * 1024, 3)
    const events = new EventEmitter()
    const failures: unknown[] = []
    events.on('peer-failure', (e) => failures.push(e))
    const hashes = new HashPool(0)
    const context: TransferContext = {
      fetch: {
        minPeerBytesPerSecond: 0,
        progressWindowMs: 1000,
        avoid: new PeerAvoidList(),
        latency: new LatencyWindow(8),
        events,
        failureAvoidMs: 1000
      } as unknown as PeerFetchConfig,
      hashes,
      log: { info() {} }
    }
    const disk = new Error('ENOSPC')
    const sink: BlobSink = { gone: false, failure: disk, write: () => Promise.reject(disk) }
    const first = {
      provider: { id: 'p', addresses: [], registryUrl: 'http://127.0.0.1:1' },
      size: bytes.byteLength,
      // Chunks a moment apart, as a network delivers them: the sink's failure lands before the body ends. (`dump` as
      // undici's body has it, for the discard.)
      body: undiciBody(
        Object.assign(
          Readable.from(
            (async function* () {
              for (let at = 0; at < bytes.byteLength; at += 16 * 1024) {
                await new Promise((resolve) => setTimeout(resolve, 5))
                yield bytes.subarray(at, at + 16 * 1024)
              }
            })()
          ),
          { dump: async () => {} }
        ) as unknown as Parameters<typeof undiciBody>[0]
      )
    }
    let resumes = 0
    const result = await receiveBlob(
      context,
      { kind: 'blob', repository: 'x', digest: digestOf(bytes) } as never,
      bytes.byteLength,
      first,
      async () => {
        resumes++
        return {}
      },
      sink
    )
    assert.equal(result.kind, 'unfinished')
    assert.equal(resumes, 0)
    assert.deepEqual(failures, [])
    await hashes.close()
  })
})
