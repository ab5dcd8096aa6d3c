/**
 * Fewer yamux window updates. `@chainsafe/libp2p-yamux` 8 sends a WINDOW_UPDATE frame after every data frame a
 * stream receives, so each DHT request and each answer is followed by an extra frame the other side must
 * decrypt and parse: twice the frames of a lookup. go-yamux (and hashicorp's yamux before it) sends one only
 * when at least half the receive window has been consumed; this applies that rule to established streams.
 * The other side sees a peer that is slower to grant window, which the protocol allows; a stream that reads
 * more than half its window (256 KiB) still gets its update, and stream set-up frames (SYN/ACK) are unchanged.
 */
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

interface WindowFields {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let applied = false

/** Makes every yamux stream of this process send a window update only once half its receive window is used. Idempotent. */
export function useHalfWindowUpdates(): void {
  if (applied) return
  applied = true
  const prototype = YamuxStream.prototype as unknown as { sendWindowUpdate(this: WindowFields): void }
  const stock = prototype.sendWindowUpdate
  prototype.sendWindowUpdate = function (this: WindowFields): void {
    if (this.state === StreamState.Established && this.recvWindowCapacity * 2 > this.recvWindow) return
    stock.call(this)
  }
}
