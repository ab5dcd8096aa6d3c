/**
 * Relaying: a blob this node is receiving from peers into a spool is offered to other peers while it arrives, so that
 * a crowd fetching one blob forms a tree instead of a star on its first holder (whose uploads are capped). Peers
 * receiving relayed bytes verify them as any peer content; a relay whose own transfer fails is cut and withdrawn.
 */
import type { Digest } from '@kadmirror/oci'
import type { GrowingReader } from './in-flight.ts'

/** A spool a relay reads from (the mirror's `SpoolSink`). */
export interface RelaySpool {
  /** One past the last byte written in order from byte 0. */
  readonly prefixEnd: number
  /** A reader that keeps the spool open until released; undefined once it is closing. */
  share(): (GrowingReader & { release(): void }) | undefined
}

/** A relayed blob a peer can read: its size, a reader of the spool, and what has arrived. */
export interface RelaySource {
  size: number
  reader: GrowingReader & { release(): void }
  /** One past the last byte arrived in order. */
  writtenEnd(): number
  /** True once the transfer failed (the bytes will never be complete). */
  abandoned(): boolean
}

interface Offer {
  spool: RelaySpool
  size: number
  failed: boolean
}

/** The blobs this node relays now, by digest (one spool each: the first transfer offered). */
export class Relays {
  readonly #offers = new Map<Digest, Offer>()

  /**
   * Offers `spool`, which is receiving the `size` bytes of `digest`. Resolves the function that ends the offer:
   * `failed` when the transfer did not verify (readers are cut); a later offer of the digest is ignored while this
   * one lasts (the function does nothing then).
   */
  offer(digest: Digest, spool: RelaySpool, size: number): { first: boolean; end(failed: boolean): void } {
    if (this.#offers.has(digest)) return { first: false, end: () => {} }
    const offer: Offer = { spool, size, failed: false }
    this.#offers.set(digest, offer)
    return {
      first: true,
      end: (failed) => {
        offer.failed = failed
        if (this.#offers.get(digest) === offer) this.#offers.delete(digest)
      }
    }
  }

  /** A reader of the relayed `digest`, or undefined when it is not relayed (or its spool is closing). */
  find(digest: Digest): RelaySource | undefined {
    const offer = this.#offers.get(digest)
    const reader = offer?.spool.share()
    if (offer === undefined || reader === undefined) return undefined
    return {
      size: offer.size,
      reader,
      writtenEnd: () => offer.spool.prefixEnd,
      abandoned: () => offer.failed
    }
  }

  /** Blobs relayed now. */
  get size(): number {
    return this.#offers.size
  }
}
