/**
 * Connections to the cluster's DHT nodes: dials to learnt peers (the node with the smaller id of a pair dials
 * first, the other yields), redials with backoff of known peers that are not connected, one connection per pair
 * (extra ones closed on both sides alike), and a warning when the process runs out of file descriptors.
 */
import type { Connection, PeerId } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import {
  DESCRIPTOR_WARNING_INTERVAL_MS,
  DIAL_TIMEOUT_MS,
  DIAL_YIELD_MS,
  MAX_PENDING_DIALS,
  MAX_REDIAL_FAILURES,
  RECONCILE_INTERVAL_MS,
  REDIAL_MAX_BACKOFF_MS
} from './constants.ts'
import type { FailureEvent, RouterEvents } from './events.ts'
import { RedialSchedule } from './redials.ts'
import type { ClusterView } from './view.ts'

/**
 * Whether `err`, or an error it wraps (`cause`, `errors`), is the process running out of file descriptors: a node
 * needs one per connection, so one per cluster member.
 */
export function isOutOfFileDescriptors(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 5) return false
  const { code, cause, errors } = err as { code?: unknown; cause?: unknown; errors?: unknown }
  if (code === 'EMFILE' || code === 'ENFILE') return true
  if (isOutOfFileDescriptors(cause, depth + 1)) return true
  return Array.isArray(errors) && errors.some((inner) => isOutOfFileDescriptors(inner, depth + 1))
}

/** Options of {@link Connections}. */
export interface ConnectionsInit {
  libp2p: Libp2p
  protocol: string
  view: ClusterView
  shutdown: AbortSignal
  events: RouterEvents
  log: Logger
  /**
   * Gossip mode: every learnt peer is dialled only after the yield time, and only if membership gossip has not
   * made it a member meanwhile (a kadmirror node in gossip mode is dialled by the connection plan, not for being
   * learnt).
   */
  membership?: 'mesh' | 'gossip'
}

/** The router's dials and redials. */
export class Connections {
  private readonly selfId: string
  private readonly dialing = new Set<string>()
  /** Learnt peers with a smaller id, waiting for their own dial before this node dials them. */
  private readonly yielding = new Set<string>()
  /** When unconnected DHT peers (dropped, or learnt but not reached) are dialled again. */
  private readonly redials = new RedialSchedule<PeerId>({
    baseMs: RECONCILE_INTERVAL_MS * 2,
    maxMs: REDIAL_MAX_BACKOFF_MS,
    maxFailures: MAX_REDIAL_FAILURES
  })
  /**
   * Whether a redial round is wanted: a peer disconnected, or a learnt peer could not be dialled. The round reads
   * every record of the peer store, so it runs only then, or while redials are pending.
   */
  private redialWanted = false
  private lastDescriptorWarning = Number.NEGATIVE_INFINITY

  private readonly init: ConnectionsInit

  constructor(init: ConnectionsInit) {
    this.init = init
    this.selfId = init.libp2p.peerId.toString()
  }

  /** Whether a redial round has work: a peer dropped, a dial failed, or redials are due. */
  get redialsWanted(): boolean {
    return this.redialWanted || this.redials.pending
  }

  /** A peer lost its last connection: redial known peers at the next round. */
  dropped(): void {
    this.redialWanted = true
  }

  private dialSignal(): AbortSignal {
    return AbortSignal.any([this.init.shutdown, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
  }

  private closed(): boolean {
    return this.init.shutdown.aborted
  }

  /** Dials a learnt peer unless it is this node, a member, connected or being dialled; a smaller id first yields. */
  connect(peer: PeerId, yielded = false): void {
    const key = peer.toString()
    const { libp2p, view } = this.init
    if (this.closed() || key === this.selfId || view.has(key) || this.dialing.has(key)) return
    if (libp2p.getConnections(peer).length > 0) return
    if (!yielded && (key < this.selfId || this.init.membership === 'gossip')) {
      this.yieldTo(key, peer)
      return
    }
    if (this.dialing.size >= MAX_PENDING_DIALS) {
      // Too many dials at once (a cluster forming): the next redial round dials it.
      this.redials.unreached(key, peer, false)
      this.redialWanted = true
      return
    }
    this.dialing.add(key)
    libp2p
      .dial(peer, { signal: this.dialSignal() })
      .then(() => this.redials.reached(key))
      .catch((err: unknown) => {
        this.dialFailed(err, key, 'dial', 'could not dial a learnt peer')
        if (this.closed()) return
        this.redials.unreached(key, peer, true)
        this.redialWanted = true
      })
      .finally(() => this.dialing.delete(key))
  }

  /** Waits for a peer with a smaller id to dial this node; dials it after all when no connection came. */
  private yieldTo(key: string, peer: PeerId): void {
    if (this.yielding.has(key)) return
    this.yielding.add(key)
    const timer = setTimeout(
      () => {
        this.yielding.delete(key)
        this.connect(peer, true)
      },
      DIAL_YIELD_MS * (1 + Math.random())
    )
    timer.unref()
  }

  /** Dials the DHT peers this node knows of but is not connected to, so the view stays complete (see redials.ts). */
  async redialKnownPeers(): Promise<void> {
    this.redialWanted = false
    const { libp2p, protocol, view } = this.init
    const known = (await libp2p.peerStore.all({ filters: [(p) => p.protocols.includes(protocol)] })).map(
      (peer) => [peer.id.toString(), peer.id] as const
    )
    const { dial, forget } = this.redials.due(
      known,
      (key, id) => key === this.selfId || view.has(key) || libp2p.getConnections(id).length > 0,
      (key) => this.dialing.has(key)
    )
    for (const id of forget) await libp2p.peerStore.delete(id).catch(() => {})
    for (const [key, id] of dial) {
      this.dialing.add(key)
      libp2p
        .dial(id, { signal: this.dialSignal() })
        .then(
          () => this.redials.reached(key),
          (err: unknown) => {
            this.dialFailed(err, key, 'redial', 'could not redial a peer')
            this.redials.failed(key)
          }
        )
        .finally(() => this.dialing.delete(key))
    }
  }

  /**
   * Logs a failed dial: at debug level, or as a warning (at most once a minute) when the process is out of file
   * descriptors, which otherwise leaves a node's view short with nothing but debug lines to say why.
   */
  dialFailed(err: unknown, peer: string, operation: FailureEvent['operation'], message: string): void {
    this.init.events.emit('failure', { operation, peer, error: err })
    const { log } = this.init
    if (!isOutOfFileDescriptors(err)) {
      log.debug({ err, peer }, message)
      return
    }
    if (Date.now() - this.lastDescriptorWarning < DESCRIPTOR_WARNING_INTERVAL_MS) return
    this.lastDescriptorWarning = Date.now()
    log.warn(
      { err, peer },
      'cannot open more connections: the process is out of file descriptors (a node needs one per cluster member; raise its open-files limit, such as LimitNOFILE)'
    )
  }

  /**
   * Closes extra connections to a peer (both nodes dialled at once), keeping one both sides agree on: one that
   * the node with the smaller id dialled. Of several dialled by one node, that node keeps the oldest. Each extra
   * connection costs both nodes memory, pings and identify runs.
   */
  readonly onConnectionOpen = (event: CustomEvent<Connection>): void => {
    const peer = event.detail.remotePeer
    const open = this.init.libp2p.getConnections(peer).filter((c) => c.status === 'open')
    if (open.length < 2) return
    const selfIsSmaller = this.selfId < peer.toString()
    const byPreferred = open.filter((c) => (c.direction === 'outbound') === selfIsSmaller)
    const kept = byPreferred.length > 0 ? byPreferred : open
    const extra = open.filter((c) => !kept.includes(c))
    // Only the dialling node can tell its own connections apart (by age); the other leaves them be.
    if ((kept[0] as Connection).direction === 'outbound' && kept.length > 1) {
      const oldest = kept.reduce((a, b) => (b.timeline.open < a.timeline.open ? b : a))
      extra.push(...kept.filter((c) => c !== oldest))
    }
    for (const connection of extra) {
      connection
        .close({ signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
        .catch((err: unknown) => connection.abort(err as Error))
    }
  }
}
