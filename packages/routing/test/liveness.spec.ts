import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import type { Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import type { Libp2pRouter } from '../src/index.ts'
import { startConnectionChecks } from '../src/liveness.ts'
import { startNode, stopAll, waitFor } from './cluster.ts'
import { spawnLineProcess } from './line-process.ts'

const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const log = pino({ level: 'silent' })

describe('connection checks', function () {
  this.timeout(30_000)
  let nodes: Libp2pRouter[] = []

  beforeEach(async () => {
    nodes = await Promise.all([startNode(), startNode()])
    const [a, b] = nodes as [Libp2pRouter, Libp2pRouter]
    await a.libp2p.dial(b.libp2p.getMultiaddrs()[0] as never)
  })

  afterEach(async () => {
    await stopAll(nodes)
  })

  const connectionsOf = (node: Libp2pRouter | undefined): number =>
    node?.libp2p.getConnections().filter((c) => c.status === 'open').length ?? 0

  it('closes a connection whose peer stops answering pings (its process frozen)', async () => {
    const [a] = nodes as [Libp2pRouter, Libp2pRouter]
    const frozen = spawnLineProcess(process.execPath, [
      fileURLToPath(new URL('fixtures/router-process.ts', import.meta.url))
    ])
    try {
      const peer = await frozen.request<{ peerId: string; addresses: string[] }>(
        JSON.stringify({ op: 'start', allowLoopback: true })
      )
      await a.libp2p.dial(multiaddr(`${peer.addresses[0]}/p2p/${peer.peerId}`))
      const toFrozen = () =>
        a.libp2p
          .getConnections()
          .filter((c) => c.status === 'open' && c.remotePeer.toString() === peer.peerId)
      assert.equal(toFrozen().length, 1)
      frozen.signal('SIGSTOP')
      const stop = startConnectionChecks({ libp2p: a.libp2p, intervalMs: 300, timeoutMs: 500, log })
      try {
        await waitFor(() => toFrozen().length === 0, 10_000, 'the connection to the frozen peer to be closed')
        // The other connection, to a live peer, stays.
        assert.equal(connectionsOf(a), 1)
      } finally {
        stop()
      }
    } finally {
      frozen.signal('SIGCONT')
      frozen.kill()
    }
  })

  /** The yamux muxer of a's one connection (a field libp2p's Connection class has and its interface does not name). */
  const muxerOf = (node: Libp2pRouter): { rtt: number; ping?: unknown } =>
    (node.libp2p.getConnections()[0] as unknown as { muxer: { rtt: number; ping?: unknown } }).muxer

  it('pings with a yamux PING frame and keeps a connection whose peer answers', async () => {
    const [a] = nodes as [Libp2pRouter, Libp2pRouter]
    let closed = 0
    a.libp2p.addEventListener('connection:close', () => closed++)
    assert.equal(muxerOf(a).rtt, -1, 'yamux keep-alive is off, so no ping has measured a round trip yet')
    const stop = startConnectionChecks({ libp2p: a.libp2p, intervalMs: 300, timeoutMs: 2_000, log })
    try {
      await waitFor(() => muxerOf(a).rtt >= 0, 10_000, 'a ping')
      await new Promise((resolve) => setTimeout(resolve, 2_000))
      assert.equal(connectionsOf(a), 1)
      assert.equal(closed, 0)
    } finally {
      stop()
    }
  })

  it('falls back to the ping protocol when the muxer cannot ping', async () => {
    const [a, b] = nodes as [Libp2pRouter, Libp2pRouter]
    muxerOf(a).ping = undefined
    let pings = 0
    await b.libp2p.unhandle(PING_PROTOCOL)
    await b.libp2p.handle(PING_PROTOCOL, async (stream: Stream) => {
      pings++
      const bytes = byteStream(stream)
      await bytes.write(await bytes.read({ bytes: 32 }))
      await stream.close()
    })
    const stop = startConnectionChecks({ libp2p: a.libp2p, intervalMs: 300, timeoutMs: 2_000, log })
    try {
      await waitFor(() => pings >= 2, 10_000, 'two pings')
      assert.equal(connectionsOf(a), 1)
    } finally {
      stop()
    }
  })

  it('keeps a connection whose peer does not speak the ping protocol (when the muxer cannot ping)', async () => {
    const [a, b] = nodes as [Libp2pRouter, Libp2pRouter]
    muxerOf(a).ping = undefined
    await b.libp2p.unhandle(PING_PROTOCOL)
    const stop = startConnectionChecks({ libp2p: a.libp2p, intervalMs: 300, timeoutMs: 2_000, log })
    try {
      await new Promise((resolve) => setTimeout(resolve, 3_000))
      assert.equal(connectionsOf(a), 1)
    } finally {
      stop()
    }
  })
})
