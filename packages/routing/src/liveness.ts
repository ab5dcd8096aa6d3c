/**
 * Connection checks spread over time. libp2p's connection monitor pings every connection at the same moment
 * once per interval; a node connected to every other node of a cluster then opens N ping streams at once, and
 * many nodes in one process (tests, benchmarks) open N² in the same second, stalling every lookup behind them
 * and aborting connections whose pings time out in the storm. Here each connection is pinged once per interval
 * at its own offset, and a connection whose ping fails or times out is aborted (the router then redials the peer if
 * it is alive). A peer that does not speak ping but answers the protocol negotiation counts as alive.
 */
import type { Connection, Libp2p } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Logger } from 'pino'
import { CONNECTION_CHECK_TICK_MS } from './constants.ts'

/** Options of {@link startConnectionChecks}. */
export interface ConnectionChecksInit {
  libp2p: Libp2p<{ ping: Ping }>
  /** How often each connection is pinged, in ms. */
  intervalMs: number
  /** A ping that takes longer fails, in ms. */
  timeoutMs: number
  log: Logger
}

/** A stream muxer that can ping its peer without opening a stream (yamux's PING frame). */
interface PingingMuxer {
  ping(options: { signal: AbortSignal }): Promise<number>
}

/**
 * The connection's muxer when it can ping: yamux answers a PING frame in its read loop, two frames in all, where
 * the ping protocol costs a new stream, a protocol negotiation and its close. libp2p's Connection class carries
 * the muxer as a public field the interface does not name; without one the ping protocol is used.
 */
function muxerOf(connection: Connection): PingingMuxer | undefined {
  const muxer = (connection as unknown as { muxer?: Partial<PingingMuxer> }).muxer
  return typeof muxer?.ping === 'function' ? (muxer as PingingMuxer) : undefined
}

/** Starts pinging every open connection once per `intervalMs`, each at a random offset; returns a function that stops. */
export function startConnectionChecks(init: ConnectionChecksInit): () => void {
  const { libp2p, intervalMs, timeoutMs, log } = init
  // Due times of the open connections, kept from connection events: listing libp2p's connections every tick
  // would decode every peer id from its string key.
  const due = new Map<Connection, number>()
  const shutdown = new AbortController()
  const schedule = (connection: Connection): void => {
    due.set(connection, Date.now() + Math.random() * intervalMs)
  }
  const onOpen = (event: CustomEvent<Connection>): void => schedule(event.detail)
  const onClose = (event: CustomEvent<Connection>): void => {
    due.delete(event.detail)
  }
  libp2p.addEventListener('connection:open', onOpen)
  libp2p.addEventListener('connection:close', onClose)
  for (const connection of libp2p.getConnections()) schedule(connection)

  const check = (connection: Connection): void => {
    const signal = AbortSignal.any([shutdown.signal, AbortSignal.timeout(timeoutMs)])
    const muxer = muxerOf(connection)
    const ping =
      muxer === undefined
        ? libp2p.services.ping.ping(connection.remotePeer, { signal })
        : muxer.ping({ signal })
    ping.catch((err: unknown) => {
      if (shutdown.signal.aborted || connection.status !== 'open') return
      // A peer that does not speak the ping protocol answered the negotiation: it is alive.
      if ((err as Error).name === 'UnsupportedProtocolError') return
      log.debug({ err, peer: connection.remotePeer.toString() }, 'connection failed its ping; closing it')
      connection.abort(err instanceof Error ? err : new Error(String(err)))
    })
  }

  const timer = setInterval(() => {
    const now = Date.now()
    for (const [connection, at] of due) {
      if (connection.status !== 'open') {
        if (connection.status === 'closed') due.delete(connection)
        continue
      }
      if (at > now) continue
      due.set(connection, now + intervalMs)
      check(connection)
    }
  }, CONNECTION_CHECK_TICK_MS)
  timer.unref()

  return () => {
    clearInterval(timer)
    shutdown.abort()
    libp2p.removeEventListener('connection:open', onOpen)
    libp2p.removeEventListener('connection:close', onClose)
    due.clear()
  }
}
