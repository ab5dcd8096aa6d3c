/**
 * Every patch of third-party internals the router applies, in one place: each names the version it was written
 * for, reaches the parts by name, logs a warning and keeps the stock behaviour when a version lacks them, and has
 * a test of the behaviour it changes (`test/patches.spec.ts`). None of these libraries has an option for them.
 *
 * - `@chainsafe/libp2p-yamux` {@link YAMUX_PATCHED_VERSION}: window updates only once half the window is used.
 * - `@libp2p/kad-dht` {@link KAD_DHT_PATCHED_VERSION}: no routing-table refresh, no ping for connected contacts,
 *   closest peers tagged once a minute.
 * - `libp2p` {@link LIBP2P_PATCHED_VERSION}: no address update left pending after `stop()`.
 */

import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import { CLOSEST_PEER_TAG_INTERVAL_MS } from './constants.ts'

/** The `@chainsafe/libp2p-yamux` version the yamux patch was written for. */
export const YAMUX_PATCHED_VERSION = '8.0.1'
/** The `@libp2p/kad-dht` version the kad-dht patches were written for. */
export const KAD_DHT_PATCHED_VERSION = '16.4.5'
/** The `libp2p` version the address-manager patch was written for. */
export const LIBP2P_PATCHED_VERSION = '3.3.11'

interface WindowFields {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let halfWindowApplied = false

/**
 * Fewer yamux window updates. `@chainsafe/libp2p-yamux` 8 sends a WINDOW_UPDATE frame after every data frame a
 * stream receives, so each DHT request and each answer is followed by an extra frame the other side must
 * decrypt and parse: twice the frames of a lookup. go-yamux (and hashicorp's yamux before it) sends one only
 * when at least half the receive window has been consumed; this applies that rule to established streams of the
 * whole process. The other side sees a peer that is slower to grant window, which the protocol allows; a stream
 * that reads more than half its window (256 KiB) still gets its update, and stream set-up frames (SYN/ACK) are
 * unchanged. Idempotent.
 */
export function useHalfWindowUpdates(log?: Logger): void {
  if (halfWindowApplied) return
  halfWindowApplied = true
  const prototype = YamuxStream.prototype as unknown as { sendWindowUpdate?: (this: WindowFields) => void }
  const stock = prototype.sendWindowUpdate
  if (typeof stock !== 'function') {
    log?.warn(
      `@chainsafe/libp2p-yamux has no YamuxStream.sendWindowUpdate (patch written for ${YAMUX_PATCHED_VERSION}): every data frame is answered with a window update`
    )
    return
  }
  prototype.sendWindowUpdate = function (this: WindowFields): void {
    if (this.state === StreamState.Established && this.recvWindowCapacity * 2 > this.recvWindow) return
    stock.call(this)
  }
}

/** The parts of kad-dht's service the patches reach, each optional: a version may lack it. */
interface StockDhtParts {
  routingTableRefresh?: { afterStart?: unknown; refreshTable?: unknown }
  routingTable?: {
    kb?: { verify?: (contact: { peerId: PeerId }, options?: unknown) => Promise<boolean> }
    closestPeerTagger?: { refreshInterval?: unknown }
  }
}

const missing = (part: string, effect: string): string =>
  `@libp2p/kad-dht has no ${part} (patch written for ${KAD_DHT_PATCHED_VERSION}): ${effect}`

/**
 * Switches kad-dht's routing-table refresh off: random-walk queries for every bucket at start and every 5 min,
 * each a multi-hop stock query. This router keeps its own full view of the cluster (peer exchange, redials), and
 * the stock table that answers Spegel peers is fed by connections; the refresh only adds load (at 100 nodes in one
 * process it dominated the time to form the mesh).
 */
export function disableTableRefresh(dht: StockDhtParts, log: Logger): void {
  const refresh = dht.routingTableRefresh
  if (refresh === undefined || typeof refresh.refreshTable !== 'function') {
    log.warn(missing('routingTableRefresh', 'its periodic refresh stays on'))
    return
  }
  refresh.afterStart = async () => {}
  refresh.refreshTable = () => {}
}

/**
 * Tags kad-dht's 20 closest peers in the peer store (so the connection manager keeps them) once a minute instead
 * of every 5 s: each round builds two peer sets and decodes their ids from strings, a sixth of what an idle node
 * allocated, and this router keeps a connection to every member anyway.
 */
export function slowClosestPeerTagging(dht: StockDhtParts, log: Logger): void {
  const tagger = dht.routingTable?.closestPeerTagger
  if (typeof tagger?.refreshInterval !== 'number') {
    log.warn(
      missing('routingTable.closestPeerTagger.refreshInterval', 'its closest peers are tagged every 5 s')
    )
    return
  }
  tagger.refreshInterval = CLOSEST_PEER_TAG_INTERVAL_MS
}

/**
 * Lets a new contact with an open connection join kad-dht's table without the ping kad-dht sends first (a
 * ping-protocol stream to check the peer is online; the peer has just connected and been identified): a stream
 * per pair of nodes while a cluster forms. Contacts without a connection are still pinged, and so are old
 * contacts when a bucket is full.
 */
export function skipPingForConnected(
  dht: StockDhtParts,
  isConnected: (peer: PeerId) => boolean,
  log: Logger
): void {
  const buckets = dht.routingTable?.kb
  const verify = buckets?.verify
  if (buckets === undefined || typeof verify !== 'function') {
    log.warn(missing('routingTable.kb.verify', 'new contacts are pinged before they join its table'))
    return
  }
  buckets.verify = async (contact, options) =>
    isConnected(contact.peerId) || verify.call(buckets, contact, options)
}

/** Applies the three kad-dht patches to a kad-dht service (before libp2p starts). */
export function tuneStockDht(dht: unknown, isConnected: (peer: PeerId) => boolean, log: Logger): void {
  const parts = dht as StockDhtParts
  disableTableRefresh(parts, log)
  slowClosestPeerTagging(parts, log)
  skipPingForConnected(parts, isConnected, log)
}

/**
 * Cancels the peer-store address update libp2p's address manager schedules when its transports stop listening: a
 * debounced 1 s timer that `stop()` leaves behind, holding the process (a daemon that has closed everything still
 * waited a second to exit). Call after `libp2p.stop()`.
 */
export function cancelPendingAddressUpdate(libp2p: unknown, log: Logger): void {
  const manager = (
    libp2p as { components?: { addressManager?: { _updatePeerStoreAddresses?: { stop?: unknown } } } }
  ).components?.addressManager
  const update = manager?._updatePeerStoreAddresses
  if (typeof update?.stop !== 'function') {
    log.warn(
      `libp2p has no components.addressManager._updatePeerStoreAddresses.stop (patch written for ${LIBP2P_PATCHED_VERSION}): the process may stay up a second after close`
    )
    return
  }
  ;(update.stop as () => void)()
}
