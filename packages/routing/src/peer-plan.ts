/**
 * Connections in gossip mode: the {@link ConnectionPlan} carried out on libp2p. Every second the planned members
 * (the nearest in Kademlia space and a few random ones) are dialled, a few at a time, and connections to members
 * beyond the bound are closed, unplanned ones least recently used first. A planned member whose connection closed without this
 * node closing it is dialled at once; if that fails it is suspected (and gossiped, unless it refutes). Members
 * watch their neighbourhood this way: a node that dies is found by the nodes that planned it — and by the nodes it
 * had dialled, which check it when that connection closes (at most once a minute each; a lookup datagram when the
 * member answers them, else a dial): a member nobody else plans (no one's nearest, no one's random pick) is watched too.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { ConnectionPlan } from './connection-plan.ts'
import {
  DIAL_TIMEOUT_MS,
  NEAR_CONNECTIONS,
  PLAN_DIAL_BACKOFF_MS,
  PLAN_DIAL_CONCURRENCY,
  PLAN_INTERVAL_MS,
  PLAN_MAX_BACKOFF_MS,
  PLAN_STABLE_MS,
  RANDOM_CONNECTIONS,
  TRIM_GRACE_MS,
  UNPLANNED_CHECK_INTERVAL_MS
} from './constants.ts'
import type { RouterEvents } from './events.ts'
import type { Gossip } from './gossip.ts'
import type { RouterLibp2p } from './libp2p-node.ts'
import { loopHealth } from './loop-health.ts'
import { reachable } from './member-table.ts'
import type { ClusterView } from './view.ts'

/** Options of {@link PeerPlan}. */
export interface PeerPlanInit {
  libp2p: RouterLibp2p
  gossip: Gossip
  view: ClusterView
  /** Most connections to kadmirror members. */
  peerConnections: number
  /**
   * Asks a member whether it is alive without a dial (a lookup datagram): resolves whether it answered; undefined
   * when it cannot be asked so (it is then dialled).
   */
  probe?(peer: string): Promise<boolean> | undefined
  shutdown: AbortSignal
  events: RouterEvents
  log: Logger
}

/** Carries out the connection plan. */
export class PeerPlan {
  private readonly plan: ConnectionPlan
  private readonly dialing = new Set<string>()
  private readonly backoffUntil = new Map<string, number>()
  /** Members whose connections this node is closing (their disconnect is no failure). */
  private readonly closing = new Set<string>()
  /** Planned members that closed this node's connection, and how many times in a row. */
  private readonly remoteCloses = new Map<string, number>()
  /** When each member's connection opened, ms. */
  private readonly openedAt = new Map<string, number>()
  /** Members whose open connection they dialled (planned, or on demand for a lookup or a provide). */
  private readonly dialledUs = new Set<string>()
  /** When each unplanned member that closed a connection it had dialled was last checked, ms. */
  private readonly checkedAt = new Map<string, number>()
  private planned = new Set<string>()
  private timer: NodeJS.Timeout | undefined

  private readonly init: PeerPlanInit

  constructor(init: PeerPlanInit) {
    this.init = init
    // A quarter of the bound near, an eighth random (16 and 8 of 64): the members that plan a connection to this
    // node add about as many again (near ones are mostly the same pairs), with room left for dials on demand.
    const near = Math.max(1, Math.min(NEAR_CONNECTIONS, Math.floor(init.peerConnections / 4)))
    const random = Math.min(RANDOM_CONNECTIONS, Math.floor(init.peerConnections / 8))
    this.plan = new ConnectionPlan({
      ...{ table: init.gossip.table, near, random, max: init.peerConnections },
      graceMs: TRIM_GRACE_MS
    })
  }

  start(): void {
    this.init.view.onUse = (peer) => this.plan.used(peer, Date.now())
    this.init.libp2p.addEventListener('connection:open', this.onOpen)
    this.timer = setInterval(() => this.reconcile(), PLAN_INTERVAL_MS)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.init.libp2p.removeEventListener('connection:open', this.onOpen)
  }

  private readonly onOpen = (
    event: CustomEvent<{ remotePeer: { toString(): string }; direction: 'inbound' | 'outbound' }>
  ): void => {
    const peer = event.detail.remotePeer.toString()
    this.plan.used(peer, Date.now())
    if (!this.openedAt.has(peer)) this.openedAt.set(peer, Date.now())
    if (event.detail.direction === 'inbound') this.dialledUs.add(peer)
    else this.dialledUs.delete(peer)
  }

  /** Connected members known by gossip. */
  private connectedMembers(): Set<string> {
    const out = new Set<string>()
    for (const peer of this.init.libp2p.getPeers()) {
      const key = peer.toString()
      if (this.init.gossip.knows(key)) out.add(key)
    }
    return out
  }

  /** Dials planned members that are not connected; closes connections beyond the bound. */
  reconcile(): void {
    if (this.init.shutdown.aborted) return
    const planned = this.plan.planned()
    this.planned = planned
    const connected = this.connectedMembers()
    const now = Date.now()
    this.dialPlanned(connected, now)
    for (const id of this.plan.excess(connected, planned, now)) {
      this.closing.add(id)
      this.plan.closed(id)
      this.init.libp2p.hangUp(peerIdFromString(id)).catch((err: unknown) => {
        this.init.log.debug({ err, peer: id }, 'could not close a connection beyond the bound')
      })
    }
  }

  /**
   * A member's last connection closed. Unless this node closed it, a planned member is dialled at once to check it
   * is alive — but one that keeps closing the connection (it is over its own bound) is dialled again only after a
   * backoff that doubles each time, up to {@link PLAN_MAX_BACKOFF_MS}. An unplanned member is checked only when it
   * had dialled this node itself, at most once per {@link UNPLANNED_CHECK_INTERVAL_MS}; a failed check makes it
   * suspect as well.
   */
  disconnected(peer: string): void {
    this.plan.closed(peer)
    const opened = this.openedAt.get(peer)
    this.openedAt.delete(peer)
    const theyDialled = this.dialledUs.delete(peer)
    if (this.closing.delete(peer)) return
    const record = this.init.gossip.table.get(peer)
    if (record === undefined || !reachable(record)) return
    const now = Date.now()
    if (!this.planned.has(peer)) {
      // A member that dialled this node closed that connection: it may have stopped — and the members that plan it
      // may be none — or only closed one it opened on demand. Checked, at most once per interval.
      if (!theyDialled || this.dialing.has(peer)) return
      if (now - (this.checkedAt.get(peer) ?? Number.NEGATIVE_INFINITY) < UNPLANNED_CHECK_INTERVAL_MS) return
      this.checkedAt.set(peer, now)
      this.check(peer)
      return
    }
    const lasted = opened !== undefined && now - opened > PLAN_STABLE_MS
    const closes = lasted ? 1 : (this.remoteCloses.get(peer) ?? 0) + 1
    this.remoteCloses.set(peer, closes)
    if (closes === 1) {
      this.dial(peer, false)
      return
    }
    this.backoffUntil.set(peer, now + Math.min(PLAN_MAX_BACKOFF_MS, PLAN_DIAL_BACKOFF_MS * 2 ** (closes - 2)))
  }

  /**
   * Checks that a member is alive: a probe when it answers them (no dial: a dial would open a connection over both
   * nodes' bounds for every connection trimmed), else — or when it does not answer — a dial that suspects it if it fails.
   */
  private check(peer: string): void {
    const probed = this.init.probe?.(peer)
    if (probed === undefined) {
      this.dial(peer, false)
      return
    }
    probed.then((alive) => {
      if (!alive && !this.init.shutdown.aborted && !this.dialing.has(peer)) this.dial(peer, false)
    })
  }

  /**
   * A dial to `peer` failed: it is suspected — unless it answers a probe (a dial on a loaded node, or to one, times
   * out while the member is fine: a datagram costs a fraction of a handshake), or this node's own event loop is
   * late (it timed the dial out itself as likely as the member failed; Lifeguard's local health).
   */
  private suspectUnlessAnswering(peer: string): void {
    const suspect = (): void => {
      if (this.init.shutdown.aborted) return
      if (loopHealth.score === 0) this.init.gossip.unreachable(peer)
      else this.init.log.debug({ peer, health: loopHealth.score }, 'dial failed while this node is slow')
    }
    const probed = this.init.probe?.(peer)
    if (probed === undefined) suspect()
    else probed.then((alive) => alive || suspect())
  }

  /** Dials planned members that are not connected, at most {@link PLAN_DIAL_CONCURRENCY} at once. */
  private dialPlanned(connected: ReadonlySet<string>, now: number): void {
    for (const id of this.planned) {
      if (this.dialing.size >= PLAN_DIAL_CONCURRENCY || this.init.shutdown.aborted) return
      if (connected.has(id) || this.dialing.has(id) || (this.backoffUntil.get(id) ?? 0) > now) continue
      this.dial(id, true)
    }
  }

  /**
   * Dials a member; a failed dial makes it suspect (it refutes if alive) unless this node's own event loop is late. `planned`: a dial of the plan, followed at
   * once by the next one the plan wants.
   */
  private dial(peer: string, planned: boolean): void {
    this.dialing.add(peer)
    const signal = AbortSignal.any([this.init.shutdown, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
    this.init.libp2p
      .dial(this.init.view.dialTarget(peerIdFromString(peer)), { signal })
      .catch((err: unknown) => {
        if (this.init.shutdown.aborted) return
        this.backoffUntil.set(peer, Date.now() + PLAN_DIAL_BACKOFF_MS)
        this.init.events.emit('failure', { operation: 'redial', peer, error: err })
        this.suspectUnlessAnswering(peer)
      })
      .finally(() => {
        this.dialing.delete(peer)
        // The next planned member, without waiting for the next reconcile.
        if (planned) this.dialPlanned(this.connectedMembers(), Date.now())
      })
  }
}
