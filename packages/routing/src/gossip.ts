/**
 * Membership by gossip (`membership: 'gossip'`): this node's {@link MemberTable} of every kadmirror node in gossip
 * mode, kept by rumors pushed to a few connected members each round and by whole-table syncs (with a node this one
 * connects to and does not know, with a random member every 5 s to a minute by cluster size, and with a dead member
 * that answers again).
 * Members enter the cluster view when they are reachable and leave it when dead or gone, connected or not.
 * Speaks {@link MEMBERS_PROTOCOL} (frames in member-wire.ts).
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import {
  ANTI_ENTROPY_INTERVAL_MS,
  ANTI_ENTROPY_MIN_INTERVAL_MS,
  ANTI_ENTROPY_MS_PER_MEMBER,
  GOSSIP_FANOUT,
  GOSSIP_INTERVAL_MS,
  LEAVE_TIMEOUT_MS,
  MAX_MEMBERS,
  MEMBERS_FRAME_MAX_BYTES,
  MEMBERS_PER_FRAME,
  MEMBERS_PROTOCOL,
  MEMBERS_STREAM_TIMEOUT_MS,
  RETRANSMIT_MULTIPLIER,
  RUMORS_PER_MESSAGE,
  SUSPECT_TIMEOUT_MS,
  TOMBSTONE_MS,
  TOMBSTONE_RETRY_INTERVAL_MS
} from './constants.ts'
import type { RouterEvents } from './events.ts'
import { peerKadId } from './keys.ts'
import type { RouterLibp2p } from './libp2p-node.ts'
import { loopHealth } from './loop-health.ts'
import {
  antiEntropyIntervalMs,
  type MemberRecord,
  MemberTable,
  reachable,
  tombstoneRetryDelayMs
} from './member-table.ts'
import { decodeMembers, encodeMembers, type MembersFrameKind } from './member-wire.ts'
import { pickRandom } from './random-pick.ts'
import { RumorQueue, retransmitLimit } from './rumors.ts'
import type { ClusterView } from './view.ts'

/** Options of {@link Gossip}. */
export interface GossipInit {
  libp2p: RouterLibp2p
  view: ClusterView
  allowLoopback: boolean
  /** This node's addresses, as strings without `/p2p/`. */
  selfAddresses(): string[]
  /** Called with members that became reachable (records are handed to them). */
  onJoined(peers: ReadonlySet<string>): void
  shutdown: AbortSignal
  events: RouterEvents
  log: Logger
}

/** This node's side of membership gossip. */
export class Gossip {
  readonly table: MemberTable
  private readonly rumors = new RumorQueue()
  private readonly kads = new Map<string, Uint8Array>()
  private retryTimer: NodeJS.Timeout | undefined
  private syncTimer: NodeJS.Timeout | undefined
  private gossiping = false
  /** Stops this node's use of the local health monitor. */
  private releaseHealth: () => void = () => {}

  private readonly init: GossipInit

  constructor(init: GossipInit) {
    this.init = init
    const id = init.libp2p.peerId.toString()
    this.table = new MemberTable({
      self: {
        id,
        kad: peerKadId(init.libp2p.peerId),
        incarnation: Date.now(),
        state: 'alive',
        addresses: init.selfAddresses()
      },
      suspectTimeoutMs: SUSPECT_TIMEOUT_MS,
      healthScore: () => loopHealth.score,
      tombstoneMs: TOMBSTONE_MS,
      onNews: (record, previous) => this.onNews(record, previous)
    })
  }

  /** Handles the protocol and starts anti-entropy. */
  async start(): Promise<void> {
    this.releaseHealth = loopHealth.use()
    await this.init.libp2p.handle(MEMBERS_PROTOCOL, (stream, connection) => {
      this.answer(stream, connection.remotePeer).catch((err: unknown) => {
        this.init.log.debug({ err, peer: connection.remotePeer.toString() }, 'members stream failed')
        stream.abort(err as Error)
      })
    })
    this.retryTombstone()
    this.scheduleAntiEntropy()
  }

  stop(): void {
    clearTimeout(this.syncTimer)
    clearTimeout(this.retryTimer)
    this.table.stop()
    this.releaseHealth()
  }

  /** Whether `peer` is a member this node knows is dead or gone. */
  gone(peer: string): boolean {
    const record = this.table.get(peer)
    return record !== undefined && !reachable(record)
  }

  /** Whether `peer` is a member this node knows by gossip (reachable or not). */
  knows(peer: string): boolean {
    return this.table.get(peer) !== undefined
  }

  /**
   * Tells every connected member that this node leaves (they gossip it on), waiting at most
   * {@link LEAVE_TIMEOUT_MS}.
   */
  async leave(): Promise<void> {
    const left = this.table.leave()
    const sends = this.randomConnected(Number.POSITIVE_INFINITY).map((peer) =>
      this.send(peer, 'push', [left])
    )
    await Promise.race([
      Promise.allSettled(sends),
      new Promise((resolve) => setTimeout(resolve, LEAVE_TIMEOUT_MS))
    ])
  }

  /**
   * A peer was identified: a kadmirror node in gossip mode that this node did not know, or believes dead (a
   * partition healed: a bootstrap round reached across), is synced with.
   */
  identified(peer: PeerId, protocols: readonly string[]): void {
    if (!protocols.includes(MEMBERS_PROTOCOL)) return
    const record = this.table.get(peer.toString())
    if (record === undefined || !reachable(record)) this.sync(peer)
  }

  /**
   * Syncs with a random connected member (and sweeps expired tombstones) every {@link ANTI_ENTROPY_MS_PER_MEMBER}
   * per member, between {@link ANTI_ENTROPY_MIN_INTERVAL_MS} and {@link ANTI_ENTROPY_INTERVAL_MS}.
   */
  private scheduleAntiEntropy(): void {
    const ms = antiEntropyIntervalMs(this.table.reachableCount + 1)
    this.syncTimer = setTimeout(() => {
      if (this.init.shutdown.aborted) return
      const peer = this.randomConnected(1)[0]
      if (peer !== undefined) this.sync(peer)
      this.table.sweep()
      this.scheduleAntiEntropy()
    }, ms).unref()
  }

  /**
   * Tries one dead member again, and syncs with it when it answers (a healed partition). Each node tries every
   * {@link TOMBSTONE_RETRY_INTERVAL_MS} × members / 100, so that a cluster of any size makes about ten tries a second.
   */
  private retryTombstone(): void {
    const next = tombstoneRetryDelayMs(
      this.table.reachableCount + 1,
      TOMBSTONE_RETRY_INTERVAL_MS,
      Math.random
    )
    this.retryTimer = setTimeout(() => this.retryTombstone(), next).unref()
    const dead = this.table.randomTombstone(Math.random)
    if (dead === undefined || dead.state === 'left' || dead.addresses.length === 0) return
    const addresses = dead.addresses.map((a) => multiaddr(`${a}/p2p/${dead.id}`))
    const signal = AbortSignal.any([this.init.shutdown, AbortSignal.timeout(MEMBERS_STREAM_TIMEOUT_MS)])
    this.init.libp2p.dial(addresses, { signal }).then(
      (connection) => this.sync(connection.remotePeer),
      (err: unknown) => this.init.log.debug({ err, peer: dead.id }, 'a dead member is still unreachable')
    )
  }

  /** A member this node could not reach: suspected (gossiped unless it refutes). */
  unreachable(peer: string): void {
    this.table.suspect(peer)
  }

  private onNews(record: MemberRecord, previous: MemberRecord | undefined): void {
    this.rumors.push(record)
    this.startGossip()
    if (record.id === this.table.self.id) return
    // A member said to be failing that this node is connected to hears it at once, and refutes if alive.
    if ((record.state === 'suspect' || record.state === 'dead') && this.isConnected(record.id))
      this.sendTo(record.id, [record])
    if (!reachable(record)) {
      this.init.view.forget(record.id)
      return
    }
    const joined = this.init.view.learn(record)
    if (joined || previous === undefined || !reachable(previous)) this.init.onJoined(new Set([record.id]))
  }

  /** Merges records a peer sent, ignoring new members beyond {@link MAX_MEMBERS}. */
  private merge(records: readonly MemberRecord[]): void {
    for (const record of records) {
      if (this.table.store.reachableCount >= MAX_MEMBERS && this.table.get(record.id) === undefined) continue
      this.table.apply(record)
    }
  }

  private startGossip(): void {
    if (this.gossiping || this.init.shutdown.aborted) return
    this.gossiping = true
    setTimeout(() => this.gossip(), GOSSIP_INTERVAL_MS * Math.random()).unref()
  }

  /** One round: rumors to a few random connected members; again in {@link GOSSIP_INTERVAL_MS} while any are left. */
  private gossip(): void {
    const peers = this.randomConnected(GOSSIP_FANOUT)
    if (this.init.shutdown.aborted || this.rumors.size === 0 || peers.length === 0) {
      this.gossiping = false
      return
    }
    const limit = retransmitLimit(this.table.reachableCount + 1, RETRANSMIT_MULTIPLIER)
    for (const peer of peers) {
      const batch = this.rumors.take(RUMORS_PER_MESSAGE, limit)
      if (batch.length === 0) break
      this.sendTo(peer.toString(), batch)
    }
    setTimeout(() => this.gossip(), GOSSIP_INTERVAL_MS).unref()
  }

  private isConnected(peer: string): boolean {
    return this.init.libp2p.getConnections(peerIdFromString(peer)).length > 0
  }

  /** Up to `count` connected members in gossip mode, picked at random. */
  private randomConnected(count: number): PeerId[] {
    const peers = this.init.libp2p.getPeers().filter((peer) => this.table.get(peer.toString()) !== undefined)
    return pickRandom(peers, count)
  }

  private sendTo(peer: string, records: MemberRecord[]): void {
    this.send(peerIdFromString(peer), 'push', records).catch((err: unknown) =>
      this.init.log.debug({ err, peer }, 'could not push rumors')
    )
  }

  /** Syncs whole tables with a peer (never rejects). */
  sync(peer: PeerId): void {
    this.send(peer, 'sync', [...this.table.store.records()]).catch((err: unknown) => {
      this.init.log.debug({ err, peer: peer.toString() }, 'members sync failed')
      this.init.events.emit('failure', { operation: 'peer-exchange', peer: peer.toString(), error: err })
    })
  }

  /** Sends records on a new stream; a sync then reads the peer's table back and merges it. */
  private async send(peer: PeerId, kind: MembersFrameKind, records: MemberRecord[]): Promise<void> {
    const signal = AbortSignal.any([this.init.shutdown, AbortSignal.timeout(MEMBERS_STREAM_TIMEOUT_MS)])
    const stream = await this.init.libp2p.dialProtocol(this.init.view.dialTarget(peer), MEMBERS_PROTOCOL, {
      signal
    })
    try {
      const frames = lpStream(stream, { maxDataLength: MEMBERS_FRAME_MAX_BYTES })
      for (let i = 0; i < records.length || i === 0; i += MEMBERS_PER_FRAME)
        await frames.write(encodeMembers(kind, records.slice(i, i + MEMBERS_PER_FRAME)), { signal })
      // Closing ends this side's writing; the peer's answer to a sync is still read.
      await stream.close({ signal })
      if (kind === 'sync') await this.readAll(stream, frames, signal)
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  /** Answers a members stream: merges what it carries; a sync is answered with this node's table. */
  private async answer(stream: Stream, peer: PeerId): Promise<void> {
    const signal = AbortSignal.timeout(MEMBERS_STREAM_TIMEOUT_MS)
    const frames = lpStream(stream, { maxDataLength: MEMBERS_FRAME_MAX_BYTES })
    const kind = await this.readAll(stream, frames, signal)
    if (kind === 'sync') {
      const records = [...this.table.store.records()]
      for (let i = 0; i < records.length; i += MEMBERS_PER_FRAME)
        await frames.write(encodeMembers('sync', records.slice(i, i + MEMBERS_PER_FRAME)), { signal })
    }
    await stream.close({ signal })
    this.init.log.trace({ peer: peer.toString(), kind }, 'members stream answered')
  }

  /** Reads frames until the remote closes its side, merging each; returns the kind of the first. */
  private async readAll(
    stream: Stream,
    frames: ReturnType<typeof lpStream>,
    signal: AbortSignal
  ): Promise<MembersFrameKind | undefined> {
    let kind: MembersFrameKind | undefined
    const context = { kadOf: (id: string) => this.kadOf(id), allowLoopback: this.init.allowLoopback }
    for (;;) {
      const bytes = await frames.read({ signal }).catch((err: unknown) => {
        if (stream.remoteWriteStatus !== 'writable') return undefined
        throw err
      })
      if (bytes === undefined) return kind
      const frame = decodeMembers(bytes.subarray(), context)
      kind ??= frame.kind
      this.merge(frame.records)
    }
  }

  /** A peer id's Kademlia id (cached), or undefined when the string is not a peer id. */
  private kadOf(id: string): Uint8Array | undefined {
    const known = this.table.get(id)?.kad ?? this.kads.get(id)
    if (known !== undefined) return known
    try {
      const kad = peerKadId(peerIdFromString(id))
      if (this.kads.size > MAX_MEMBERS) this.kads.clear()
      this.kads.set(id, kad)
      return kad
    } catch {
      return undefined
    }
  }
}
