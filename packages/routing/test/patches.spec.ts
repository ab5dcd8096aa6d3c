import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { type Logger, pino } from 'pino'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  cancelPendingAddressUpdate,
  disableTableRefresh,
  KAD_DHT_PATCHED_VERSION,
  LIBP2P_PATCHED_VERSION,
  skipPingForConnected,
  slowClosestPeerTagging,
  tuneStockDht,
  useHalfWindowUpdates,
  YAMUX_PATCHED_VERSION
} from '../src/patches.ts'
import { startNode } from './cluster.ts'

// yamux frame types on the wire (spec): 0 data, 1 window update.
const DATA = 0
const WINDOW_UPDATE = 1
const WINDOW = 256 * 1024

type YamuxFrame = Parameters<YamuxStream['handleData']>[0]

interface SentFrame {
  type: number
  length: number
}

/** An established yamux stream whose frames are recorded instead of sent. */
function establishedStream(): { stream: YamuxStream; sent: SentFrame[]; receive(bytes: number): void } {
  const sent: SentFrame[] = []
  const stream = new YamuxStream({
    id: '1',
    streamId: 1,
    log: logger('kadmirror:test:yamux'),
    direction: 'inbound',
    state: StreamState.Established,
    getRTT: () => -1,
    sendFrame: (header) => {
      sent.push({ type: header.type, length: header.length })
      return true
    }
  })
  const receive = (bytes: number): void =>
    stream.handleData({
      header: { type: DATA, flag: 0, streamID: 1, length: bytes },
      // routing's uint8arraylist may be another version than yamux's; the stream only reads its length
      data: new Uint8ArrayList(new Uint8Array(bytes)) as unknown as YamuxFrame['data']
    })
  return { stream, sent, receive }
}

describe('yamux window updates', () => {
  before(() => useHalfWindowUpdates())

  it('sends no window update for small messages on an established stream', () => {
    const { sent, receive } = establishedStream()
    for (let i = 0; i < 100; i++) receive(200)
    assert.deepEqual(sent, [])
  })

  it('grants the whole consumed window once half of it is used', () => {
    const { sent, receive } = establishedStream()
    receive(WINDOW / 2 - 1)
    assert.deepEqual(sent, [])
    receive(1)
    assert.deepEqual(sent, [{ type: WINDOW_UPDATE, length: WINDOW / 2 }])
    receive(100)
    assert.equal(sent.length, 1)
  })

  it('still acknowledges a stream the remote opened with its first window update', () => {
    const { stream, sent, receive } = establishedStream()
    stream.state = StreamState.SYNReceived
    receive(10)
    assert.equal(sent.length, 1)
    assert.equal(sent[0]?.type, WINDOW_UPDATE)
    assert.equal(stream.state, StreamState.Established)
  })
})

/** A logger that keeps its warnings. */
function recordingLogger(): { log: Logger; warnings: string[] } {
  const warnings: string[] = []
  const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line).msg) })
  return { log, warnings }
}

describe('kad-dht patches', () => {
  it('are written for the kad-dht and yamux versions installed', async () => {
    const installed = async (name: string): Promise<string> =>
      JSON.parse(await readFile(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8'))
        .version
    assert.equal(await installed('@libp2p/kad-dht'), KAD_DHT_PATCHED_VERSION)
    assert.equal(await installed('@chainsafe/libp2p-yamux'), YAMUX_PATCHED_VERSION)
  })

  it('switch the routing-table refresh off: refreshing starts no query', async () => {
    let queries = 0
    const refresh = { afterStart: async () => queries++, refreshTable: () => queries++ }
    const { log, warnings } = recordingLogger()
    disableTableRefresh({ routingTableRefresh: refresh }, log)
    await refresh.afterStart()
    refresh.refreshTable()
    assert.equal(queries, 0)
    assert.deepEqual(warnings, [])
  })

  it('tag the closest peers once a minute', () => {
    const tagger = { refreshInterval: 5_000 }
    slowClosestPeerTagging({ routingTable: { closestPeerTagger: tagger } }, recordingLogger().log)
    assert.equal(tagger.refreshInterval, 60_000)
  })

  it('let a connected contact into the table without a ping, and still ping one that is not connected', async () => {
    const pinged: string[] = []
    const connected = peerIdFromString('12D3KooWGRUVh9Ybm1yQy8Kca6wMRnLzSwz6VA9iaEgEQy3ZUWnD')
    const other = peerIdFromString('12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq')
    const kb = {
      verify: async (contact: { peerId: PeerId }) => {
        pinged.push(contact.peerId.toString())
        return false
      }
    }
    skipPingForConnected({ routingTable: { kb } }, (peer) => peer.equals(connected), recordingLogger().log)
    assert.equal(await kb.verify({ peerId: connected }), true)
    assert.equal(await kb.verify({ peerId: other }), false)
    assert.deepEqual(pinged, [other.toString()])
  })

  it('warn and keep the stock behaviour when a kad-dht version lacks the parts they patch', () => {
    const { log, warnings } = recordingLogger()
    tuneStockDht({}, () => true, log)
    assert.equal(warnings.length, 3)
    for (const warning of warnings)
      assert.match(warning, new RegExp(`patch written for ${KAD_DHT_PATCHED_VERSION}`))
  })

  it('find every part they patch in the installed kad-dht (no warning on a real node)', async () => {
    const { log, warnings } = recordingLogger()
    const node = await startNode({ logger: log })
    try {
      assert.deepEqual(warnings, [])
      const dht = node.libp2p.services.dht as unknown as {
        routingTable: { closestPeerTagger: { refreshInterval: number } }
      }
      assert.equal(dht.routingTable.closestPeerTagger.refreshInterval, 60_000)
    } finally {
      await node.close()
    }
  })
})

describe('libp2p patches', function () {
  this.timeout(30_000)

  it('leave nothing to hold the process once a router has closed (libp2p’s pending address update is cancelled)', async () => {
    const script = fileURLToPath(new URL('fixtures/close-and-linger.ts', import.meta.url))
    const { stdout } = await promisify(execFile)(process.execPath, [script])
    assert.equal(stdout, 'exited\n')
  })

  it('warn when libp2p lacks the address update they cancel', () => {
    const { log, warnings } = recordingLogger()
    cancelPendingAddressUpdate({}, log)
    assert.equal(warnings.length, 1)
    assert.match(warnings[0] as string, new RegExp(`patch written for ${LIBP2P_PATCHED_VERSION}`))
  })

  it('are written for the libp2p version installed', async () => {
    const manifest = JSON.parse(
      await readFile(new URL('../node_modules/libp2p/package.json', import.meta.url), 'utf8')
    )
    assert.equal(manifest.version, LIBP2P_PATCHED_VERSION)
  })
})
