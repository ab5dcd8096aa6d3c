/**
 * An index of values by Kademlia id that yields them in XOR order from any target without scanning them all:
 * ids kept sorted, the closest found by walking the sorted ranges bit by bit (the entries that share a longer
 * prefix with the target are closer than all others). Finding the k closest of n costs about k + log n range
 * splits instead of n distance comparisons — what a view of 10 000 members needs on every lookup and placement.
 */

interface Entry<V> {
  readonly kad: Uint8Array
  readonly id: string
  readonly value: V
}

/** Bit `bit` (0 = the most significant bit of the first byte) of `bytes`. */
function bitAt(bytes: Uint8Array, bit: number): number {
  return ((bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1
}

/** Compares two ids as unsigned big-endian numbers. */
function compareIds(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const d = (a[i] as number) - (b[i] as number)
    if (d !== 0) return d
  }
  return a.length - b.length
}

/** Values by Kademlia id (all ids of one length, 32 bytes for sha256), each under a unique string id. */
export class KadIndex<V> {
  private readonly sorted: Array<Entry<V>> = []
  private readonly byId = new Map<string, Entry<V>>()

  get size(): number {
    return this.sorted.length
  }

  has(id: string): boolean {
    return this.byId.has(id)
  }

  get(id: string): V | undefined {
    return this.byId.get(id)?.value
  }

  /** Adds `value` under `id` at `kad`, replacing what `id` held. */
  set(id: string, kad: Uint8Array, value: V): void {
    this.delete(id)
    const entry: Entry<V> = { kad, id, value }
    this.sorted.splice(this.position(kad), 0, entry)
    this.byId.set(id, entry)
  }

  /** Removes `id`; false when it was not there. */
  delete(id: string): boolean {
    const entry = this.byId.get(id)
    if (entry === undefined) return false
    this.byId.delete(id)
    let i = this.position(entry.kad)
    while (this.sorted[i] !== entry) i++
    this.sorted.splice(i, 1)
    return true
  }

  /** The value at position `i` in id order (0 ≤ i < size), or undefined outside. */
  at(i: number): V | undefined {
    return this.sorted[i]?.value
  }

  /** Every value, in no particular order. */
  *values(): Generator<V, void, undefined> {
    for (const entry of this.byId.values()) yield entry.value
  }

  /** The first position whose id is not below `kad`. */
  private position(kad: Uint8Array): number {
    let lo = 0
    let hi = this.sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareIds((this.sorted[mid] as Entry<V>).kad, kad) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The first position in [lo, hi) whose bit `bit` is 1 (the range shares the bits before it). */
  private split(lo: number, hi: number, bit: number): number {
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (bitAt((this.sorted[mid] as Entry<V>).kad, bit) === 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Every value, closest to `target` first (equal ids in id order). */
  *nearest(target: Uint8Array): Generator<V, void, undefined> {
    const bits = target.length * 8
    // Ranges still to yield, the next one last: [lo, hi, bit] where the range shares its first `bit` bits.
    const stack: number[] = [0, this.sorted.length, 0]
    while (stack.length > 0) {
      const bit = stack.pop() as number
      const hi = stack.pop() as number
      const lo = stack.pop() as number
      if (hi - lo === 1 || (hi > lo && bit === bits)) {
        for (let i = lo; i < hi; i++) yield (this.sorted[i] as Entry<V>).value
        continue
      }
      if (hi <= lo) continue
      const mid = this.split(lo, hi, bit)
      // The half that agrees with the target at this bit is closer: pushed last, walked first.
      if (bitAt(target, bit) === 0) stack.push(mid, hi, bit + 1, lo, mid, bit + 1)
      else stack.push(lo, mid, bit + 1, mid, hi, bit + 1)
    }
  }

  /** The `count` values closest to `target`, closest first. */
  closest(target: Uint8Array, count: number): V[] {
    const out: V[] = []
    if (count <= 0) return out
    for (const value of this.nearest(target)) {
      out.push(value)
      if (out.length === count) break
    }
    return out
  }
}
