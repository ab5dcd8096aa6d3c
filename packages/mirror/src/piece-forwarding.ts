/**
 * A large blob from several peers, forwarded as it arrives (`verifyBeforeForwarding: false`): the pieces land in a
 * spool file at their offsets — the reorder buffer is on disk, so memory stays the piece transfer's (5 MiB with 4
 * peers) whatever the order they land in — and the client is sent the landed prefix in order, the last bytes of its
 * range held back until the whole blob's digest matches. A mismatch cuts the response (containerd resumes with
 * Range and its commit fails once, as with one peer); then whole copies find which peers lied.
 */
import type { ServerResponse } from 'node:http'
import type { BlobPath, ByteRange } from '@kadmirror/oci'
import type { Provider } from '@kadmirror/routing'
import type { ReceiveResult, SpoolSink, TransferContext } from './blob-transfer.ts'
import { FORWARD_HOLD_BACK_BYTES, GROWING_POLL_MS } from './constants.ts'
import { copyGrowing, type GrowingLimits, GrowingStalledError, sendGrowing } from './in-flight.ts'
import type { PeerBlob } from './peer-fetch.ts'
import {
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

/** How a forwarded piece transfer ended: the transfer's result, body bytes sent, and the peers found lying. */
export interface ForwardedPieces {
  result: ReceiveResult
  sent: number
  liars: Provider[]
}

/** Where whole copies come from when the pieces do not verify. */
export interface CopySources {
  /** The whole blob from `provider`. */
  whole(provider: Provider): Promise<PeerBlob>
  /** A new spool for one copy (it must outlive the cut response). */
  spool(): Promise<SpoolSink>
}

/**
 * Receives `blob` into `spool` from several peers and writes the client's range to `res` (headers already sent) as
 * its prefix lands; ends the response once the digest matches, destroys it otherwise.
 */
export async function forwardInPieces(
  context: TransferContext,
  settings: PieceSettings,
  res: ServerResponse,
  blob: ForwardedBlob,
  sources: PieceSources & { copies: CopySources },
  spool: SpoolSink
): Promise<ForwardedPieces> {
  const { range } = blob
  const heldFrom = Math.max(range.start, range.end + 1 - FORWARD_HOLD_BACK_BYTES)
  const reader = spool.share()
  if (reader === undefined) throw new Error('the spool is closing')
  let failed = false
  const limits: GrowingLimits = {
    stallMs: Number.POSITIVE_INFINITY, // the piece transfer bounds the peers; a failure sets `failed`
    pollMs: GROWING_POLL_MS,
    writtenEnd: () => spool.prefixEnd,
    abandoned: () => failed
  }
  try {
    const sentBefore = (err: unknown) => (err instanceof GrowingStalledError ? err.position - range.start : 0)
    const prefix = copyGrowing(res, reader, { start: range.start, end: heldFrom - 1 }, limits).catch(
      sentBefore
    )
    const received = await receiveInPieces(context, settings, blob.path, blob.size, sources, spool)
    const result = received.result
    failed = result.kind !== 'verified'
    let sent = await prefix
    if (result.kind === 'verified' && sent === heldFrom - range.start) {
      const tail = { start: heldFrom, end: range.end }
      sent += await sendGrowing(res, reader, tail, limits).catch((err: unknown) => {
        res.destroy() // the spool could not be read back: cut, never a short body that looks complete
        return Math.max(0, sentBefore(err) - (heldFrom - range.start))
      })
      return { result, sent, liars: [] }
    }
    res.destroy()
    if (result.kind !== 'mismatch') return { result, sent, liars: [] }
    if (received.contributions.size < 2) return { result, sent, liars: result.contributors }
    const failedCopy = { spool, contributions: received.contributions }
    return { result, sent, liars: await nameLiars(context, blob, failedCopy, sources.copies) }
  } finally {
    failed = true // whatever ended the transfer, the prefix copy stops
    reader.release()
  }
}

/** The peers whose pieces differ from a whole copy that verifies (fetched from one contributor at a time). */
async function nameLiars(
  context: TransferContext,
  blob: ForwardedBlob,
  failed: Parameters<typeof recoverFromMismatch>[3],
  copies: CopySources
): Promise<Provider[]> {
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
