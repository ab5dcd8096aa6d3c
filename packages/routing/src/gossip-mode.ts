/**
 * Gossip mode's parts, built together: the member table with its protocol ({@link Gossip}) and the connection
 * plan carried out on libp2p ({@link PeerPlan}); and the hooks membership calls on identify and disconnect.
 */
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { RouterEvents } from './events.ts'
import { Gossip } from './gossip.ts'
import type { RouterLibp2p } from './libp2p-node.ts'
import type { MembershipGossip } from './membership.ts'
import { PeerPlan } from './peer-plan.ts'
import type { Settings } from './router-settings.ts'
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
}

/** Builds gossip mode's parts. */
export function gossipMode(init: GossipModeInit): GossipMode {
  const { libp2p, settings, view, events, shutdown } = init
  const log: Logger = settings.log
  const members = new Gossip({
    ...{ libp2p, view, allowLoopback: settings.allowLoopback, shutdown, events, log },
    ...{ onJoined: init.onJoined, selfAddresses: init.selfAddresses }
  })
  const plan = new PeerPlan({
    ...{ libp2p, gossip: members, view, peerConnections: settings.peerConnections },
    ...{ shutdown, events, log }
  })
  return { members, plan }
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
 * How lookups reach members in gossip mode: `open` dials a member known by gossip before it is asked (undefined
 * when a connection is open), `connected` tells whether one is open.
 */
export function lookupConnections(libp2p: RouterLibp2p, view: ClusterView, timeoutMs: number) {
  const connected = (peer: PeerId): boolean => libp2p.getConnections(peer).length > 0
  const open = (peer: PeerId): Promise<void> | undefined => {
    if (connected(peer)) return undefined
    return libp2p
      .dial(view.dialTarget(peer), { signal: AbortSignal.timeout(timeoutMs) })
      .then(() => undefined)
  }
  return { open, connected }
}
