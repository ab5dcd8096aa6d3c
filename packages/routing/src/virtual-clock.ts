/**
 * A virtual clock: timers that fire only when the clock is moved, in time order (then in the order they were
 * set). Tests use it for membership timeouts; a simulator runs a whole cluster's timers and messages on one.
 */
import type { Clock } from './member-table.ts'

interface Timer {
  at: number
  seq: number
  callback: (() => void) | undefined
}

/** A {@link Clock} whose time moves only by {@link VirtualClock.advance} or {@link VirtualClock.next}. */
export class VirtualClock implements Clock {
  private time = 0
  private seq = 0
  /** A binary min-heap by (at, seq). */
  private readonly heap: Timer[] = []

  now(): number {
    return this.time
  }

  /** Timers set and not yet fired or cleared (cleared ones count until their time passes). */
  get pending(): number {
    return this.heap.length
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const timer: Timer = { at: this.time + Math.max(0, ms), seq: this.seq++, callback }
    this.push(timer)
    return timer
  }

  clearTimeout(handle: unknown): void {
    if (handle !== undefined) (handle as Timer).callback = undefined
  }

  /** Fires the earliest timer (moving the time to it); false when none is left. */
  next(): boolean {
    const timer = this.pop()
    if (timer === undefined) return false
    this.time = Math.max(this.time, timer.at)
    timer.callback?.()
    return true
  }

  /** Fires every timer due within `ms` from now, in order, and ends `ms` later. */
  advance(ms: number): void {
    const end = this.time + ms
    while (this.heap.length > 0 && (this.heap[0] as Timer).at <= end) this.next()
    this.time = end
  }

  /** When the earliest timer is due, or undefined. */
  peek(): number | undefined {
    return this.heap[0]?.at
  }

  private before(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }

  private push(timer: Timer): void {
    const heap = this.heap
    heap.push(timer)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(timer, heap[parent] as Timer)) break
      heap[i] = heap[parent] as Timer
      i = parent
    }
    heap[i] = timer
  }

  private pop(): Timer | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) return top
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      if (left >= heap.length) break
      const right = left + 1
      const child =
        right < heap.length && this.before(heap[right] as Timer, heap[left] as Timer) ? right : left
      if (!this.before(heap[child] as Timer, last)) break
      heap[i] = heap[child] as Timer
      i = child
    }
    heap[i] = last
    return top
  }
}
