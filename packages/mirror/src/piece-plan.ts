/**
 * Which bytes of a blob fetched from several peers at once go to whom: the blob cut into pieces of a fixed size,
 * each claimed by one peer at a time (the lowest first, so the verified prefix grows from the start), given back
 * from the byte reached when its peer fails, and — once none is left unclaimed — the back half of the slowest piece
 * in flight split off for an idle peer. Faster peers so take more pieces: the split follows measured throughput,
 * not a fixed share. Also which bytes have reached the spool ({@link LandedBytes}).
 */

/** A part of the blob: bytes `[start, end)`, of which `[start, next)` were received. */
export interface Piece {
  readonly start: number
  /** One past its last byte; lowered when its back part is split off for another peer. */
  end: number
  /** The first byte not received yet. */
  next: number
  /** Who holds it (a worker's name), while claimed. */
  holder?: string
  /** When the holder began it (performance.now ms), for its throughput. */
  claimedAt?: number
}

/** The pieces of one blob and who holds them. */
export class PiecePlan {
  readonly #open: Piece[] = []
  readonly #held = new Set<Piece>()
  readonly #minSplitBytes: number
  #remaining: number

  /** `size` bytes cut into pieces of `pieceBytes`; a split leaves each part at least `minSplitBytes`. */
  constructor(size: number, pieceBytes: number, minSplitBytes = Math.max(1, Math.floor(pieceBytes / 4))) {
    for (let start = 0; start < size; start += pieceBytes)
      this.#open.push({ start, end: Math.min(size, start + pieceBytes), next: start })
    this.#remaining = size
    this.#minSplitBytes = minSplitBytes
  }

  /** Bytes not received yet. */
  get remaining(): number {
    return this.#remaining
  }

  /** True once every byte was received. */
  get done(): boolean {
    return this.#remaining === 0
  }

  /** Pieces unclaimed right now. */
  get unclaimed(): number {
    return this.#open.length
  }

  /** The lowest unclaimed piece, now held by `holder`; undefined when none is left unclaimed. */
  claim(holder: string, now = performance.now()): Piece | undefined {
    this.#open.sort((a, b) => a.next - b.next)
    const piece = this.#open.shift()
    if (piece === undefined) return undefined
    piece.holder = holder
    piece.claimedAt = now
    this.#held.add(piece)
    return piece
  }

  /** The piece that starts at byte `at`, when it is unclaimed (a body already at that byte can go on with it). */
  claimAt(at: number, holder: string, now = performance.now()): Piece | undefined {
    const index = this.#open.findIndex((p) => p.next === at)
    if (index === -1) return undefined
    const [piece] = this.#open.splice(index, 1) as [Piece]
    piece.holder = holder
    piece.claimedAt = now
    this.#held.add(piece)
    return piece
  }

  /**
   * Splits the back half off the held piece with the most bytes left (when each part keeps at least the minimum)
   * and gives it to `holder`; undefined when no piece is worth splitting.
   */
  split(holder: string, now = performance.now()): Piece | undefined {
    let widest: Piece | undefined
    for (const piece of this.#held)
      if (widest === undefined || piece.end - piece.next > widest.end - widest.next) widest = piece
    if (widest === undefined) return undefined
    const left = widest.end - widest.next
    if (left < 2 * this.#minSplitBytes) return undefined
    const middle = widest.next + Math.ceil(left / 2)
    const back: Piece = { start: middle, end: widest.end, next: middle, holder, claimedAt: now }
    widest.end = middle
    this.#held.add(back)
    return back
  }

  /** Records `bytes` received for `piece` (at its `next`). @throws when they go past its end. */
  received(piece: Piece, bytes: number): void {
    if (piece.next + bytes > piece.end) throw new RangeError('more bytes than the piece has')
    piece.next += bytes
    this.#remaining -= bytes
    if (piece.next === piece.end) this.#held.delete(piece)
  }

  /** Gives a held piece back (its holder failed or stopped): it is claimed again from the byte reached. */
  giveBack(piece: Piece): void {
    if (!this.#held.delete(piece)) return
    piece.holder = undefined
    piece.claimedAt = undefined
    if (piece.next < piece.end) this.#open.push(piece)
  }
}

/** Byte ranges of the blob written to the spool; the prefix from byte 0 is what may be hashed. */
export class LandedBytes {
  /** Disjoint, sorted `[start, end)` ranges. */
  readonly #ranges: [number, number][] = []

  /** Records `[start, end)` as written. */
  add(start: number, end: number): void {
    if (end <= start) return
    const ranges = this.#ranges
    let i = 0
    while (i < ranges.length && (ranges[i] as [number, number])[1] < start) i++
    let from = start
    let to = end
    while (i < ranges.length && (ranges[i] as [number, number])[0] <= to) {
      const [a, b] = ranges[i] as [number, number]
      from = Math.min(from, a)
      to = Math.max(to, b)
      ranges.splice(i, 1)
    }
    ranges.splice(i, 0, [from, to])
  }

  /** One past the last byte of the written prefix from byte 0 (0 when byte 0 has not landed). */
  get prefixEnd(): number {
    const first = this.#ranges[0]
    return first !== undefined && first[0] === 0 ? first[1] : 0
  }
}
