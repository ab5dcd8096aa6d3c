import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { Libp2p } from 'libp2p'
import { pino } from 'pino'
import type { BootstrapPeer, Bootstrapper } from '../src/bootstrap.ts'
import { BootstrapLoop } from '../src/bootstrap-loop.ts'
import type { Connections } from '../src/connections.ts'
import type { RouterEvents } from '../src/events.ts'
import type { ClusterView } from '../src/view.ts'

const SELF: BootstrapPeer = { id: '12D3KooWSelf', addresses: ['/ip4/10.0.0.1/tcp/5001'] }

/** A loop whose bootstrapper answers `peers`, with a view of `members` peers; resolves the warnings it logged. */
async function warningsOfOneRound(peers: BootstrapPeer[], members: number): Promise<string[]> {
  const lines: string[] = []
  const bootstrapper: Bootstrapper = { peers: async () => peers }
  const loop = new BootstrapLoop({
    // No other peer is listed in these cases, so nothing is dialled.
    libp2p: {} as Libp2p,
    bootstrapper,
    view: { size: members } as ClusterView,
    connections: {} as Connections,
    self: () => SELF,
    shutdown: new AbortController().signal,
    events: new EventEmitter() as RouterEvents,
    log: pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line).msg) })
  })
  await loop.once()
  return lines
}

describe('bootstrap loop warnings', () => {
  it('does not warn when the bootstrapper lists only this node while it has peers', async () => {
    assert.deepEqual(await warningsOfOneRound([SELF], 3), [])
  })

  it('warns when the bootstrapper lists only this node and it has no peer', async () => {
    assert.deepEqual(await warningsOfOneRound([SELF], 0), ['the bootstrapper lists no node but this one'])
  })

  it('does not warn when the bootstrapper lists nobody while the node has peers', async () => {
    assert.deepEqual(await warningsOfOneRound([], 2), [])
  })
})
