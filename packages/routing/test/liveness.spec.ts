import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { pino } from 'pino'
import type { Libp2pRouter } from '../src/index.ts'
import { startConnectionChecks } from '../src/liveness.ts'
import { startNode, stopAll, waitFor } from './cluster.ts'

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

  it('closes a connection whose peer stops answering pings', async () => {
    const [a, b] = nodes as [Libp2pRouter, Libp2pRouter]
    await b.libp2p.unhandle(PING_PROTOCOL)
    // Negotiates the protocol, then never echoes: a peer whose process is stuck.
    const held: Stream[] = []
    await b.libp2p.handle(PING_PROTOCOL, (stream: Stream) => {
      held.push(stream)
    })
    const stop = startConnectionChecks({ libp2p: a.libp2p, intervalMs: 300, timeoutMs: 500, log })
    try {
      await waitFor(() => connectionsOf(a) === 0, 10_000, 'the connection to be closed')
    } finally {
      stop()
    }
  })

  it('keeps a connection whose peer answers pings', async () => {
    const [a, b] = nodes as [Libp2pRouter, Libp2pRouter]
    let pings = 0
    await b.libp2p.unhandle(PING_PROTOCOL)
    await b.libp2p.handle(PING_PROTOCOL, async (stream: Stream) => {
      pings++
      const bytes = byteStream(stream)
      await bytes.write(await bytes.read({ bytes: 32 }))
      await stream.close()
    })
    let closed = 0
    a.libp2p.addEventListener('connection:close', () => closed++)
    const stop = startConnectionChecks({ libp2p: a.libp2p, intervalMs: 300, timeoutMs: 2_000, log })
    try {
      await waitFor(() => pings >= 3, 10_000, 'three pings')
      assert.equal(connectionsOf(a), 1)
      assert.equal(closed, 0)
    } finally {
      stop()
    }
  })

  it('keeps a connection whose peer does not speak ping', async () => {
    const [a, b] = nodes as [Libp2pRouter, Libp2pRouter]
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
