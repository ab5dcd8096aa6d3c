/**
 * Peers named in DHT answers, and where to reach a peer: members' addresses come from identify (kept in the view);
 * other peers' from the peer store, where the peers of answers are merged.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import * as Digest from 'multiformats/hashes/digest'
import type { Logger } from 'pino'
import type { WirePeer } from './kad-message.ts'
import { isLoopback } from './libp2p-node.ts'
import type { ClusterView } from './view.ts'

/** A peer parsed from a DHT answer. */
export interface LearntPeer {
  id: PeerId
  addresses: Multiaddr[]
}

/** Options of {@link AddressBook}. */
export interface AddressBookInit {
  libp2p: Libp2p
  view: ClusterView
  allowLoopback: boolean
  log: Logger
}

/** Reads peers from answers into the peer store, and finds a peer's addresses. */
export class AddressBook {
  private readonly init: AddressBookInit

  constructor(init: AddressBookInit) {
    this.init = init
  }

  /** Parses the peers of an answer, skipping malformed entries and this node; merges their addresses into the peer store. */
  async learn(peers: readonly WirePeer[]): Promise<LearntPeer[]> {
    const { libp2p, view, allowLoopback, log } = this.init
    const out: LearntPeer[] = []
    for (const peer of peers) {
      try {
        const id = peerIdFromMultihash(Digest.decode(peer.id))
        if (id.equals(libp2p.peerId)) continue
        const addresses = peer.multiaddrs
          .map((bytes) => multiaddr(bytes))
          .filter((a) => allowLoopback || !isLoopback(a))
        // The peer store is slow to write; the peers this node is connected to are in it already.
        if (addresses.length > 0 && !view.has(id.toString()))
          await libp2p.peerStore.merge(id, { multiaddrs: addresses })
        out.push({ id, addresses })
      } catch (err) {
        log.debug({ err }, 'ignoring a malformed peer in a DHT answer')
      }
    }
    return out
  }

  /** A peer's addresses: a member's from identify, else the peer store's (kept on the member); empty when unknown. */
  async addressesOf(peer: PeerId): Promise<Multiaddr[]> {
    const member = this.init.view.get(peer.toString())
    if (member !== undefined && member.addresses.length > 0) return member.addresses
    try {
      const addresses = (await this.init.libp2p.peerStore.get(peer)).addresses.map((a) => a.multiaddr)
      if (member !== undefined) member.addresses = addresses
      return addresses
    } catch {
      return []
    }
  }
}
