/**
 * Requests to peers on reused streams, by purpose: lookups and peer exchange go to kadmirror peers on
 * {@link LOOKUP_PROTOCOL} (lookup streams kept 60 s, exchange streams 1 s), and to Spegel peers on the DHT
 * protocol (streams kept 5 s, below kad-dht's 10 s idle timeout). See sessions.ts for how a session works.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import { EXCHANGE_SESSION_IDLE_MS, LOOKUP_PROTOCOL, LOOKUP_SESSION_IDLE_MS } from './constants.ts'
import type { KadMessage } from './kad-message.ts'
import { Sessions } from './sessions.ts'
import type { ClusterView } from './view.ts'

/** What a request is for; it picks the protocol and how long its stream is kept. */
export type RequestPurpose = 'lookup' | 'exchange'

/** Request sessions to the peers of a view. */
export class PeerRequests {
  private readonly dht: Sessions
  private readonly lookups: Sessions
  private readonly exchanges: Sessions

  private readonly view: ClusterView

  constructor(libp2p: Libp2p, protocol: string, view: ClusterView) {
    this.view = view
    this.dht = new Sessions((peer, signal) =>
      libp2p.dialProtocol(view.dialTarget(peer), protocol, { signal })
    )
    const openLookupStream = (peer: PeerId, signal: AbortSignal): Promise<Stream> =>
      libp2p.dialProtocol(view.dialTarget(peer), LOOKUP_PROTOCOL, { signal })
    this.lookups = new Sessions(openLookupStream, LOOKUP_SESSION_IDLE_MS)
    this.exchanges = new Sessions(openLookupStream, EXCHANGE_SESSION_IDLE_MS)
  }

  /**
   * Sends `message` to `peer` and resolves its answer: on the lookup protocol when the peer speaks it, else on the
   * DHT protocol. @throws as {@link Sessions.request}.
   */
  request(
    peer: PeerId,
    message: KadMessage,
    timeoutMs: number,
    purpose: RequestPurpose
  ): Promise<KadMessage> {
    const key = peer.toString()
    this.view.use(key)
    const kadmirror = this.view.get(key)?.lookups === true
    const sessions = !kadmirror ? this.dht : purpose === 'lookup' ? this.lookups : this.exchanges
    return sessions.request(peer, message, timeoutMs)
  }

  /** Closes the sessions of a peer that left. */
  drop(peer: PeerId): void {
    this.dht.drop(peer)
    this.lookups.drop(peer)
    this.exchanges.drop(peer)
  }

  /** Closes every session. */
  closeAll(): void {
    this.dht.closeAll()
    this.lookups.closeAll()
    this.exchanges.closeAll()
  }
}
