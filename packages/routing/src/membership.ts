/**
 * Membership: who is in the view. Identified connections that speak the DHT protocol are admitted; a peer whose
 * last connection closes leaves. Connected peers whose identify was missed or failed are reconciled every few
 * seconds; peers are asked for the nodes they know (peer exchange) on every tick while the view grows, when they
 * join and twice a minute; joins are debounced, then the joiners are asked for peers and handed records.
 */
import type { IdentifyResult, PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { AddressBook } from './address-book.ts'
import type { Connections } from './connections.ts'
import {
  JOIN_DEBOUNCE_MS,
  JOIN_EXCHANGE_PEERS,
  PEER_EXCHANGE_TIMEOUT_REQUESTS,
  REIDENTIFY_INTERVAL_MS,
  REIDENTIFY_TIMEOUT_REQUESTS,
  VIEW_GROWTH_WINDOW_MS
} from './constants.ts'
import type { RouterEvents } from './events.ts'
import { MessageType } from './kad-message.ts'
import type { RouterLibp2p } from './libp2p-node.ts'
import type { PeerRequests } from './peer-requests.ts'
import type { ClusterView } from './view.ts'

/** Options of {@link Membership}. */
export interface MembershipInit {
  libp2p: RouterLibp2p
  protocol: string
  view: ClusterView
  connections: Connections
  requests: PeerRequests
  addressBook: AddressBook
  requestTimeoutMs: number
  /** Called, debounced, with the peers that joined (records are handed to them). */
  onJoined(peers: ReadonlySet<string>): void
  /** Gossip mode: members known by gossip stay in the view when disconnected; their disconnects are checked. */
  gossip?: MembershipGossip
  shutdown: AbortSignal
  events: RouterEvents
  log: Logger
}

/** What membership needs of gossip mode. */
export interface MembershipGossip {
  /** Whether `peer` is known by gossip. */
  knows(peer: string): boolean
  /** Whether gossip says `peer` is dead or has left (it is not admitted while a connection to it lingers). */
  gone(peer: string): boolean
  /** A node speaking the members protocol was identified. */
  identified(peer: PeerId, protocols: readonly string[]): void
  /** A member known by gossip lost its last connection. */
  disconnected(peer: string): void
}

/** Keeps the view in step with connections and identify. */
export class Membership {
  /**
   * Connected peers by id, kept from connect and disconnect events: `libp2p.getPeers()` decodes every peer id from
   * its string key, too much to call every few seconds on every node of a cluster in one process.
   */
  private readonly connected = new Map<string, PeerId>()
  /** When identify was last run again on a connected peer missing from the view, ms since the epoch. */
  private readonly reidentified = new Map<string, number>()
  private readonly joined = new Set<string>()
  private joinTimer: NodeJS.Timeout | undefined

  private readonly init: MembershipInit

  constructor(init: MembershipInit) {
    this.init = init
  }

  /** Starts following libp2p's events. */
  start(): void {
    const { libp2p, connections } = this.init
    libp2p.addEventListener('peer:identify', this.onIdentify)
    libp2p.addEventListener('peer:connect', this.onConnect)
    libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    libp2p.addEventListener('connection:open', connections.onConnectionOpen)
    for (const peer of libp2p.getPeers()) this.connected.set(peer.toString(), peer)
  }

  /** Stops following them. */
  stop(): void {
    const { libp2p, connections } = this.init
    clearTimeout(this.joinTimer)
    libp2p.removeEventListener('peer:identify', this.onIdentify)
    libp2p.removeEventListener('peer:connect', this.onConnect)
    libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    libp2p.removeEventListener('connection:open', connections.onConnectionOpen)
  }

  /** Whether the view grew within the last {@link VIEW_GROWTH_WINDOW_MS}. */
  growing(): boolean {
    return Date.now() - this.init.view.lastGrowth < VIEW_GROWTH_WINDOW_MS
  }

  /** Takes a connected peer into the view when it speaks the DHT protocol, and learns its registry port. */
  private admit(
    peerId: PeerId,
    protocols: readonly string[],
    addresses: IdentifyResult['listenAddrs'] = []
  ): void {
    if (this.init.shutdown.aborted || this.init.libp2p.getConnections(peerId).length === 0) return
    if (this.init.gossip?.gone(peerId.toString()) === true) return
    const member = this.init.view.admit(peerId, protocols, addresses)
    if (member === undefined) return
    this.joined.add(member.key)
    clearTimeout(this.joinTimer)
    this.joinTimer = setTimeout(this.flushJoined, JOIN_DEBOUNCE_MS)
    this.joinTimer.unref()
  }

  private readonly onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    if (event.detail.connection.status !== 'open') return
    this.admit(event.detail.peerId, event.detail.protocols, event.detail.listenAddrs)
    this.init.gossip?.identified(event.detail.peerId, event.detail.protocols)
  }

  private readonly onConnect = (event: CustomEvent<PeerId>): void => {
    this.connected.set(event.detail.toString(), event.detail)
  }

  private readonly onDisconnect = (event: CustomEvent<PeerId>): void => {
    const key = event.detail.toString()
    if (this.init.libp2p.getConnections(event.detail).length > 0) return
    this.connected.delete(key)
    this.init.requests.drop(event.detail)
    if (this.init.gossip?.knows(key) === true) {
      this.init.gossip.disconnected(key)
      return
    }
    this.init.connections.dropped()
    this.init.view.remove(key)
  }

  /** Asks the peers that joined for peers, and hands them records. */
  private readonly flushJoined = (): void => {
    const fresh = new Set([...this.joined].filter((key) => this.init.view.has(key)))
    this.joined.clear()
    if (this.init.shutdown.aborted || fresh.size === 0) return
    for (const key of [...fresh].filter((k) => this.connected.has(k)).slice(0, JOIN_EXCHANGE_PEERS)) {
      const member = this.init.view.get(key)
      if (member !== undefined) this.exchange(member.id)
    }
    this.init.onJoined(fresh)
  }

  /**
   * Admits connected peers whose identify event was missed (identify raced a duplicate connection), and runs
   * identify again, at most every 30 s, on connections where it failed (a busy node times out).
   */
  async reconcile(): Promise<void> {
    const { libp2p, view, protocol } = this.init
    if (this.connected.size === view.size) return
    for (const [key, peer] of this.connected) {
      if (view.has(key)) continue
      const protocols = await libp2p.peerStore.get(peer).then(
        (p) => p.protocols,
        (): string[] => [] // not in the peer store yet
      )
      if (protocols.includes(protocol)) {
        this.admit(peer, protocols)
        continue
      }
      this.reidentify(key, peer)
    }
    for (const key of this.reidentified.keys()) if (view.has(key)) this.reidentified.delete(key)
  }

  private reidentify(key: string, peer: PeerId): void {
    const connection = this.init.libp2p.getConnections(peer)[0]
    if (connection === undefined || (this.reidentified.get(key) ?? 0) > Date.now() - REIDENTIFY_INTERVAL_MS)
      return
    this.reidentified.set(key, Date.now())
    this.init.libp2p.services.identify
      .identify(connection, {
        signal: AbortSignal.timeout(this.init.requestTimeoutMs * REIDENTIFY_TIMEOUT_REQUESTS)
      })
      .then((result) => this.admit(peer, result.protocols))
      .catch((err: unknown) => {
        this.init.log.debug({ err, peer: key }, 'identify failed again')
        this.init.events.emit('failure', { operation: 'identify', peer: key, error: err })
      })
  }

  /** Asks a random connected member for the nodes it knows (in gossip mode most members are not connected). */
  exchangeWithRandomMember(): void {
    const connected = [...this.connected.keys()].filter((key) => this.init.view.has(key))
    const pick = this.init.view.get(connected[Math.floor(Math.random() * connected.length)] ?? '')
    if (pick !== undefined) this.exchange(pick.id)
  }

  /** Asks a peer for the nodes it knows closest to a random target, and connects to them. */
  private exchange(peer: PeerId): void {
    this.exchangePeers(peer).catch((err: unknown) => {
      this.init.log.debug({ err, peer: peer.toString() }, 'peer exchange failed')
      this.init.events.emit('failure', { operation: 'peer-exchange', peer: peer.toString(), error: err })
    })
  }

  private async exchangePeers(peer: PeerId): Promise<void> {
    const target = new Uint8Array(32)
    crypto.getRandomValues(target)
    const { requests, addressBook, connections, requestTimeoutMs } = this.init
    const answer = await requests.request(
      peer,
      { type: MessageType.FIND_NODE, key: target, closer: [], providers: [] },
      requestTimeoutMs * PEER_EXCHANGE_TIMEOUT_REQUESTS,
      'exchange'
    )
    for (const { id } of await addressBook.learn(answer.closer)) connections.connect(id)
  }
}
