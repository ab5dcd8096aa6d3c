/**
 * Gossip mode's parts, built together: the member table with its protocol ({@link Gossip}) and the connection
 * plan carried out on libp2p ({@link PeerPlan}); and the hooks membership calls on identify and disconnect.
 */
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import { createAllowList, parsePrivateNetworkKey } from './access.ts'
import {
  DATAGRAM_BACKOFF_MS,
  DATAGRAM_FAILURES_BEFORE_STREAMS,
  DATAGRAM_FAILURES_TRACKED
} from './constants.ts'
import { datagramKey } from './datagram-wire.ts'
import { type DatagramAddress, DatagramLookups } from './datagrams.ts'
import { RouterClosedError } from './errors.ts'
import type { RouterEvents } from './events.ts'
import { Gossip } from './gossip.ts'
import { type KadMessage, MessageType } from './kad-message.ts'
import { DEFAULT_LISTEN_ADDRESSES, type RouterLibp2p } from './libp2p-node.ts'
import type { MembershipGossip } from './membership.ts'
import { PeerPlan } from './peer-plan.ts'
import type { Libp2pRouterInit, Settings } from './router-settings.ts'
import type { ClusterView } from './view.ts'

/** The parts of gossip mode. */
export interface GossipMode {
  members: Gossip
  plan: PeerPlan
}

/** What gossip mode is built from. */
export interface GossipModeInit {
  libp2p: RouterLibp2p
  settings: Settings
  view: ClusterView
  events: RouterEvents
  shutdown: AbortSignal
  /** This node's addresses, as strings without `/p2p/`. */
  selfAddresses(): string[]
  /** Called with members that became reachable (records are handed to them). */
  onJoined(peers: ReadonlySet<string>): void
  /** Lookups over UDP: their addresses go into this node's member record. */
  datagrams?: DatagramLookups
}

/** Builds gossip mode's parts. */
export function gossipMode(init: GossipModeInit): GossipMode {
  const { libp2p, settings, view, events, shutdown } = init
  const log: Logger = settings.log
  const selfAddresses = (): string[] => {
    const own = init.selfAddresses()
    return init.datagrams === undefined ? own : [...own, ...init.datagrams.addressesFor(own)]
  }
  const members = new Gossip({
    ...{ libp2p, view, allowLoopback: settings.allowLoopback, shutdown, events, log },
    ...{ onJoined: init.onJoined, selfAddresses }
  })
  const { datagrams } = init
  const plan = new PeerPlan({
    ...{ libp2p, gossip: members, view, peerConnections: settings.peerConnections },
    ...{ shutdown, events, log },
    ...(datagrams === undefined ? {} : { probe: probeByDatagram(view, datagrams, settings.requestTimeoutMs) })
  })
  return { members, plan }
}

/**
 * Asks a member whether it is alive in one datagram (an empty GET_PROVIDERS): resolves whether it answered, or
 * returns undefined when it announces no datagram address (it is then dialled).
 */
function probeByDatagram(view: ClusterView, datagrams: DatagramLookups, timeoutMs: number) {
  return (peer: string): Promise<boolean> | undefined => {
    const to = view.get(peer)?.datagrams?.find((a) => datagrams.reaches(a))
    if (to === undefined) return undefined
    const probe: KadMessage = { type: MessageType.GET_PROVIDERS, closer: [], providers: [] }
    return datagrams.request(to, probe, timeoutMs).then(
      () => true,
      () => false
    )
  }
}

/** The hooks membership calls in gossip mode. */
export function gossipHooks({ members, plan }: GossipMode): MembershipGossip {
  return {
    knows: (peer: string) => members.knows(peer),
    gone: (peer: string) => members.gone(peer),
    identified: (peer: PeerId, protocols: readonly string[]) => members.identified(peer, protocols),
    disconnected: (peer: string) => plan.disconnected(peer)
  }
}

/**
 * Binds the sockets of gossip mode's lookups over UDP (see `datagrams.ts`) at the router's TCP port numbers, or
 * returns undefined in mesh mode or when `datagramLookups` is off.
 */
export async function startDatagramLookups(
  libp2p: RouterLibp2p,
  init: Libp2pRouterInit,
  settings: Settings
): Promise<DatagramLookups | undefined> {
  if (settings.membership !== 'gossip' || init.datagramLookups === false) return undefined
  const key = datagramKey(
    init.privateNetworkKey === undefined ? undefined : parsePrivateNetworkKey(init.privateNetworkKey)
  )
  const allowed = init.allowedNetworks === undefined ? undefined : createAllowList(init.allowedNetworks)
  const datagrams = new DatagramLookups({
    ...(key === undefined ? {} : { key }),
    ...(allowed === undefined ? {} : { allowed }),
    answering: () => libp2p.status === 'started',
    log: settings.log
  })
  const tcpPort = (family: 4 | 6): number => {
    for (const address of libp2p.getMultiaddrs()) {
      const [ip, tcp] = address.getComponents()
      if (ip?.name === `ip${family}` && tcp?.name === 'tcp') return Number(tcp.value)
    }
    return 0
  }
  await datagrams.bind(init.listen ?? DEFAULT_LISTEN_ADDRESSES, tcpPort)
  return datagrams
}

/**
 * How lookups reach members in gossip mode: a member with no connection is asked in a datagram (`askByDatagram`)
 * when it announces a datagram address and has not left the last {@link DATAGRAM_FAILURES_BEFORE_STREAMS} unanswered,
 * else `open` dials it before it is asked (undefined when no dial is needed); `connected` tells whether it can be
 * asked without a dial.
 */
export function lookupConnections(
  libp2p: RouterLibp2p,
  view: ClusterView,
  timeoutMs: number,
  datagrams?: DatagramLookups
) {
  const linked = (peer: PeerId): boolean => libp2p.getConnections(peer).length > 0
  const unanswered = new DatagramFailures()
  const datagramTo = (peer: PeerId): DatagramAddress | undefined => {
    if (datagrams === undefined || linked(peer) || unanswered.failing(peer.toString())) return undefined
    return view.get(peer.toString())?.datagrams?.find((a) => datagrams.reaches(a))
  }
  const connected = (peer: PeerId): boolean => linked(peer) || datagramTo(peer) !== undefined
  const open = (peer: PeerId): Promise<void> | undefined => {
    if (connected(peer)) return undefined
    return libp2p
      .dial(view.dialTarget(peer), { signal: AbortSignal.timeout(timeoutMs) })
      .then(() => undefined)
  }
  const askByDatagram = (peer: PeerId, message: KadMessage): Promise<KadMessage> | undefined => {
    const to = datagramTo(peer)
    if (to === undefined || datagrams === undefined) return undefined
    return unanswered.track(peer.toString(), datagrams.request(to, message, timeoutMs))
  }
  return { open, connected, askByDatagram }
}

/** Members whose lookup datagrams went unanswered, asked over connections for a while. */
class DatagramFailures {
  private readonly failures = new Map<string, { count: number; at: number }>()

  /** Whether `peer` left its last {@link DATAGRAM_FAILURES_BEFORE_STREAMS} datagrams unanswered, within the backoff. */
  failing(peer: string): boolean {
    const failures = this.failures.get(peer)
    if (failures === undefined || failures.count < DATAGRAM_FAILURES_BEFORE_STREAMS) return false
    if (Date.now() - failures.at < DATAGRAM_BACKOFF_MS) return true
    this.failures.delete(peer)
    return false
  }

  /** Counts a request that failed (unanswered) against `peer`, or clears its count when it is answered. */
  track(peer: string, request: Promise<KadMessage>): Promise<KadMessage> {
    return request.then(
      (answer) => {
        this.failures.delete(peer)
        return answer
      },
      (err: unknown) => {
        if (!(err instanceof RouterClosedError)) {
          if (this.failures.size > DATAGRAM_FAILURES_TRACKED) this.failures.clear()
          const count = (this.failures.get(peer)?.count ?? 0) + 1
          this.failures.set(peer, { count, at: Date.now() })
        }
        throw err
      }
    )
  }
}
