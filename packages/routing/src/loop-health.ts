/**
 * This process's own health, as Lifeguard (memberlist's extension of SWIM) uses it: a node whose event loop is late
 * — starved of CPU, or blocked — times out dials and misses refutations of members that are fine, and would declare
 * them dead. A score from 0 (healthy) to {@link LOOP_HEALTH_MAX_SCORE}: one more for each interval in which a turn
 * of the event loop waited {@link LOOP_LATE_MS} or longer, one less for each other. One monitor per process, shared
 * by every router in it, running while one of them uses it.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { LOOP_HEALTH_INTERVAL_MS, LOOP_HEALTH_MAX_SCORE, LOOP_LATE_MS } from './constants.ts'

/** Resolution of the event-loop delay histogram, in ms. */
const RESOLUTION_MS = 20

/** The local health score of this process. */
export class LoopHealth {
  private histogram: ReturnType<typeof monitorEventLoopDelay> | undefined
  private timer: NodeJS.Timeout | undefined
  private users = 0
  private current = 0

  /** 0 when healthy; up to {@link LOOP_HEALTH_MAX_SCORE} after that many late intervals in a row. */
  get score(): number {
    return this.current
  }

  /** Starts measuring (the first user starts the monitor); returns the function that stops this use. */
  use(): () => void {
    if (this.users++ === 0) this.start()
    let released = false
    return () => {
      if (released) return
      released = true
      if (--this.users === 0) this.stop()
    }
  }

  /** Reads one interval: `lateMs`, the longest wait of a turn in it, raises or lowers the score. */
  record(lateMs: number): void {
    const late = lateMs >= LOOP_LATE_MS
    this.current = Math.max(0, Math.min(LOOP_HEALTH_MAX_SCORE, this.current + (late ? 1 : -1)))
  }

  private start(): void {
    const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
    histogram.enable()
    this.histogram = histogram
    this.timer = setInterval(() => {
      this.record(histogram.max / 1e6 - RESOLUTION_MS)
      histogram.reset()
    }, LOOP_HEALTH_INTERVAL_MS)
    this.timer.unref()
  }

  private stop(): void {
    clearInterval(this.timer)
    this.histogram?.disable()
    this.histogram = undefined
    this.current = 0
  }
}

/** The health of this process, shared by its routers. */
export const loopHealth = new LoopHealth()
