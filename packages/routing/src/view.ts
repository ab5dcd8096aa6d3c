/**
 * The cluster view: the DHT nodes this node is connected to and has identified (members), what each speaks, the
 * addresses it listens on and the registry mirror it announces. Lookups and placement read it; membership
 * (identify, disconnects) writes it. Emits `peer:join` and `peer:leave`.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { CLAIM_PROTOCOL, LOOKUP_PROTOCOL, PROVIDE_PROTOCOL, REGISTRY_INFO_PROTOCOL } from './constants.ts'
import { type DatagramAddress, datagramAddressOf } from './datagrams.ts'
import type { RouterEvents } from './events.ts'
import { KadIndex } from './kad-index.ts'
import { peerKadId } from './keys.ts'
import { isLoopback } from './libp2p-node.ts'
import type { MemberRecord } from './member-table.ts'
import type { Provider } from './router.ts'
import type { LookupPeer } from './strategy.ts'

/** A DHT node in the view. */
export interface Member extends LookupPeer {
  id: PeerId
  /** Speaks {@link PROVIDE_PROTOCOL} (a kadmirror node, not a Spegel one). */
  batches: boolean
  /** Speaks {@link LOOKUP_PROTOCOL}. */
  lookups: boolean
  /** Speaks {@link CLAIM_PROTOCOL} (can arbitrate claims). */
  claims: boolean
  /** The addresses it listens on, from identify; empty when unknown (then read from the peer store). */
  addresses: Multiaddr[]
  /** Known by membership gossip (it stays a member while not connected). */
  gossiped?: boolean
  /** Where it answers lookup datagrams (gossip mode; from its member record's `/udp/` addresses). */
  datagrams?: DatagramAddress[]
}

/** The registry mirror a peer announces. */
export interface RegistryInfo {
  port: number
  scheme: 'http' | 'https'
}

/** The protocol id that announces a registry mirror at `scheme` and `port`. */
export function registryProtocol(info: RegistryInfo): string {
  return `${REGISTRY_INFO_PROTOCOL}/${info.scheme}/${info.port}`
}

/**
 * The registry mirror a peer announces among its protocols: undefined when it announces none, an Error when the
 * announcement is malformed (a scheme other than http or https, a port outside 1..65535).
 */
export function announcedRegistry(protocols: readonly string[]): RegistryInfo | Error | undefined {
  const prefix = `${REGISTRY_INFO_PROTOCOL}/`
  const announced = protocols.find((p) => p.startsWith(prefix))
  if (announced === undefined) return undefined
  const match = /^(https?)\/([1-9][0-9]{0,4})$/.exec(announced.slice(prefix.length))
  const port = Number(match?.[2])
  if (match === null || port > 65535)
    return new Error(`${announced} is not ${prefix}<http|https>/<port 1..65535>`)
  return { scheme: match[1] as 'http' | 'https', port }
}

/** Options of {@link ClusterView}. */
export interface ClusterViewInit {
  /** The DHT protocol a member must speak. */
  protocol: string
  /** This node's registry mirror: its URL scheme and port are assumed for peers that announce none. */
  registry: RegistryInfo
  allowLoopback: boolean
  events: RouterEvents
  log: Logger
}

/** The members of the cluster this node knows, by peer id string. */
export class ClusterView {
  private readonly byId = new Map<string, Member>()
  /** The members by Kademlia id: the closest to a key without a scan of the view (10 000 members in gossip mode). */
  private readonly index = new KadIndex<Member>()
  private readonly registries = new Map<string, RegistryInfo>()
  /** Peers whose invalid registry announcement was logged already. */
  private readonly invalidRegistry = new Set<string>()
  /** When the view last grew, ms since the epoch. */
  lastGrowth = Date.now()
  /** Called when a request or records go to a peer (the connection plan keeps used connections). */
  onUse: ((peer: string) => void) | undefined

  private readonly init: ClusterViewInit

  constructor(init: ClusterViewInit) {
    this.init = init
  }

  get size(): number {
    return this.byId.size
  }

  has(peer: string): boolean {
    return this.byId.has(peer)
  }

  get(peer: string): Member | undefined {
    return this.byId.get(peer)
  }

  members(): IterableIterator<Member> {
    return this.byId.values()
  }

  ids(): string[] {
    return [...this.byId.keys()]
  }

  /** The `count` members closest to `target`, closest first. */
  closest(target: Uint8Array, count: number): Member[] {
    return this.index.closest(target, count)
  }

  /**
   * Learns a connected peer's registry announcement, and takes it into the view when it speaks the DHT protocol.
   * Returns the new member, or undefined when it was a member already or speaks no DHT.
   */
  admit(peerId: PeerId, protocols: readonly string[], addresses: Multiaddr[] = []): Member | undefined {
    const key = peerId.toString()
    this.learnRegistry(key, protocols)
    if (!protocols.includes(this.init.protocol) || this.byId.has(key)) return undefined
    const member: Member = {
      id: peerId,
      key,
      kad: peerKadId(peerId),
      batches: protocols.includes(PROVIDE_PROTOCOL),
      lookups: protocols.includes(LOOKUP_PROTOCOL),
      claims: protocols.includes(CLAIM_PROTOCOL),
      addresses
    }
    this.byId.set(key, member)
    this.index.set(key, member.kad, member)
    this.lastGrowth = Date.now()
    this.init.events.emit('peer:join', { peer: key, kadmirror: member.lookups })
    return member
  }

  /**
   * Takes a member known by gossip into the view (a kadmirror node: it speaks the lookup, provide and claim protocols),
   * or updates its addresses; returns true when it is new to the view.
   */
  learn(record: MemberRecord): boolean {
    const addresses: Multiaddr[] = []
    const datagrams: DatagramAddress[] = []
    for (const address of record.addresses.map((a) => multiaddr(a))) {
      const datagram = datagramAddressOf(address)
      if (datagram === undefined) addresses.push(address)
      else datagrams.push(datagram)
    }
    const known = this.byId.get(record.id)
    if (known !== undefined) {
      known.gossiped = true
      if (addresses.length > 0) known.addresses = addresses
      if (record.addresses.length > 0) known.datagrams = datagrams
      return false
    }
    const id = peerIdFromString(record.id)
    const member: Member = {
      id,
      key: record.id,
      kad: record.kad,
      batches: true,
      lookups: true,
      claims: true,
      addresses,
      gossiped: true,
      datagrams
    }
    this.byId.set(record.id, member)
    this.index.set(record.id, member.kad, member)
    this.lastGrowth = Date.now()
    this.init.events.emit('peer:join', { peer: record.id, kadmirror: true })
    return true
  }

  /** Notes that a request or records went to `peer`. */
  use(peer: string): void {
    this.onUse?.(peer)
  }

  /** Drops a member gossip says is dead or gone, connected or not. */
  forget(peer: string): void {
    this.remove(peer)
  }

  /**
   * What to dial to reach a peer: a member's addresses (with its id), so that a member known only by gossip can be
   * dialled; else its id (libp2p reads the peer store). An open connection is reused either way.
   */
  dialTarget(peer: PeerId): PeerId | Multiaddr[] {
    const member = this.byId.get(peer.toString())
    if (member?.gossiped !== true || member.addresses.length === 0) return peer
    return member.addresses.map((a) => a.encapsulate(`/p2p/${member.key}`))
  }

  /** Drops a peer from the view (its last connection closed). */
  remove(peer: string): void {
    if (!this.byId.delete(peer)) return
    this.index.delete(peer)
    this.init.events.emit('peer:leave', { peer })
  }

  private learnRegistry(peer: string, protocols: readonly string[]): void {
    const registry = announcedRegistry(protocols)
    if (registry === undefined) return
    if (!(registry instanceof Error)) {
      this.registries.set(peer, registry)
      return
    }
    if (this.invalidRegistry.has(peer)) return
    this.invalidRegistry.add(peer)
    this.init.log.warn(
      { err: registry, peer },
      'peer announced an invalid registry; assuming our registry port'
    )
  }

  /** The base URL of a peer's registry mirror at the first usable of `addresses`, or undefined when none is. */
  registryUrl(peer: string, addresses: readonly Multiaddr[]): string | undefined {
    const info = this.registries.get(peer) ?? this.init.registry
    for (const address of addresses) {
      if (!this.init.allowLoopback && isLoopback(address)) continue
      const first = address.getComponents()[0]
      if (first?.value === undefined || (first.name !== 'ip4' && first.name !== 'ip6')) continue
      const host = first.name === 'ip6' ? `[${first.value}]` : first.value
      return `${info.scheme}://${host}:${info.port}`
    }
    return undefined
  }

  /** A peer as a lookup yields it, or undefined when none of its addresses has a registry URL. */
  toProvider(peer: string, addresses: readonly Multiaddr[]): Provider | undefined {
    const url = this.registryUrl(peer, addresses)
    if (url === undefined) return undefined
    return {
      id: peer,
      addresses: addresses.map((a) => a.toString()),
      registryUrl: url,
      connected: this.byId.has(peer)
    }
  }
}
