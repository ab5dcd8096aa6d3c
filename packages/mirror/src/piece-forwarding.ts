/**
 * A large blob from several peers, forwarded as it arrives (`verifyBeforeForwarding: false`): the pieces land in a
 * spool file at their offsets — the reorder buffer is on disk, so memory stays the piece transfer's (5 MiB with 4
 * peers) whatever the order they land in — and the client is sent the landed prefix in order, the last bytes of its
 * range held back until the whole blob's digest matches. A mismatch cuts the response (containerd resumes with
 * Range and its commit fails once, as with one peer) — or, when nothing was sent yet, the caller answers 404; then
 * whole copies find which peers lied.
 */
import type { ServerResponse } from 'node:http'
import type { BlobPath, ByteRange } from '@kadmirror/oci'
import type { Provider } from '@kadmirror/routing'
import type { ReceiveResult, SpoolSink, TransferContext } from './blob-transfer.ts'
import { FORWARD_HOLD_BACK_BYTES, GROWING_POLL_MS } from './constants.ts'
import { copyGrowing, type GrowingLimits, GrowingStalledError } from './in-flight.ts'
import type { PeerBlob } from './peer-fetch.ts'
import {
  type Contributions,
  type PieceSettings,
  type PieceSources,
  receiveInPieces,
  recoverFromMismatch
} from './piece-transfer.ts'

/** The blob a client asked for: where it is, its size in bytes, and the bytes the client gets. */
export interface ForwardedBlob {
  path: BlobPath
  size: number
  range: ByteRange
}

/**
 * How a forwarded piece transfer ended: the transfer's result, whether the answer began (its headers sent: when not,
 * the caller still answers), body bytes sent, and who sent which bytes (to name the liars: {@link nameLiars}).
 */
export interface ForwardedPieces {
  result: ReceiveResult
  begun: boolean
  sent: number
  contributions: Contributions
}

/** Where whole copies come from when the pieces do not verify. */
export interface CopySources {
  /** The whole blob from `provider`. */
  whole(provider: Provider): Promise<PeerBlob>
  /** A new spool for one copy (it must outlive the cut response). */
  spool(): Promise<SpoolSink>
}

/**
 * Receives `blob` into `spool` from several peers and writes the client's range to `res` as its prefix lands,
 * calling `begin` (which sends the headers) before the first byte; ends the response once the digest matches. A
 * failure after the first byte destroys the response; before it, the response is left to the caller (a clean 404).
 */
export async function forwardInPieces(
  context: TransferContext,
  settings: PieceSettings,
  res: ServerResponse,
  blob: ForwardedBlob,
  sources: PieceSources,
  spool: SpoolSink,
  begin: () => void
): Promise<ForwardedPieces> {
  const { range } = blob
  const heldFrom = Math.max(range.start, range.end + 1 - FORWARD_HOLD_BACK_BYTES)
  const reader = spool.share()
  if (reader === undefined) throw new Error('the spool is closing')
  let failed = false
  let begun = false
  const beginOnce = () => {
    if (begun) return
    begun = true
    begin()
  }
  const limits: GrowingLimits = {
    stallMs: Number.POSITIVE_INFINITY, // the piece transfer bounds the peers; a failure sets `failed`
    pollMs: GROWING_POLL_MS,
    writtenEnd: () => spool.prefixEnd,
    abandoned: () => failed
  }
  try {
    // Bytes a copy from `start` sent before it failed.
    const sentFrom = (start: number) => (err: unknown) =>
      err instanceof GrowingStalledError ? err.position - start : 0
    const head = { start: range.start, end: heldFrom - 1 }
    const prefix = copyGrowing(res, reader, head, limits, beginOnce).catch(sentFrom(head.start))
    const received = await receiveInPieces(context, settings, blob.path, blob.size, sources, spool)
    const result = received.result
    failed = result.kind !== 'verified'
    let sent = await prefix
    if (result.kind === 'verified' && sent === heldFrom - range.start) {
      const tail = { start: heldFrom, end: range.end }
      sent += await copyGrowing(res, reader, tail, limits, beginOnce).catch(sentFrom(tail.start))
      if (sent === range.end + 1 - range.start) res.end()
      else res.destroy() // the spool could not be read back: cut, never a short body that looks complete
    } else if (begun) res.destroy()
    return { result, begun, sent, contributions: received.contributions }
  } finally {
    failed = true // whatever ended the transfer, the prefix copy stops
    reader.release()
  }
}

/**
 * The peers that sent wrong bytes when the pieces in `failed.spool` did not hash to the digest: the one contributor
 * when there was one, else those whose pieces differ from a whole copy that verifies (fetched from one contributor at
 * a time, into spools of `copies`).
 */
export async function nameLiars(
  context: TransferContext,
  blob: ForwardedBlob,
  failed: { spool: SpoolSink; contributions: Contributions },
  copies: CopySources
): Promise<Provider[]> {
  const contributors = [...failed.contributions.values()].map((c) => c.provider)
  if (contributors.length < 2) return contributors
  const recovered = await recoverFromMismatch(
    context,
    blob.path,
    blob.size,
    failed,
    copies.whole,
    copies.spool
  )
  await recovered.spool?.close()
  return recovered.liars
}
