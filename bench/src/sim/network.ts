/**
 * The simulator's network: one virtual clock for every node, a latency per message (a base plus exponential
 * jitter), loss, partitions, and connections that cost round trips and handshake CPU to open. A message between
 * nodes that cannot reach each other is lost; a dial to a stopped process is refused after one round trip (its
 * host answers with a reset), a dial across a partition times out.
 */
import type { VirtualClock } from '@kadmirror/routing/membership'

/** The latency and cost model. */
export interface NetworkModel {
  /** One-way latency of a message, in ms (before jitter). */
  latencyMs: number
  /** Mean of the exponential jitter added to each message, in ms. */
  jitterMs: number
  /** Round trips to open a connection (TCP, noise XX, muxer and protocol negotiation). */
  dialRoundTrips: number
  /** Handshake CPU of a dial on top of its round trips, in ms. */
  dialCpuMs: number
  /** Time a dial or request waits for an unreachable peer before it fails, in ms. */
  timeoutMs: number
  /** Probability that a message is lost. */
  loss: number
  /** Bytes per ms a transfer moves (a node's share of its link). */
  bytesPerMs: number
}

/** What the network needs of a node. */
export interface NetworkNode {
  readonly id: string
  readonly alive: boolean
  /** A connection to `peer` opened (this node dialled it or it dialled this node). */
  onOpen(peer: string): void
  /** The connection to `peer` closed: `reset` (the peer's process stopped), `timeout` (pings failed), `closed`. */
  onClose(peer: string, reason: 'reset' | 'timeout' | 'closed'): void
}

/** A seeded random source (Park–Miller), so runs repeat. */
export function seededRandom(seed: number): () => number {
  let state = seed % 2147483647 || 1
  return () => {
    state = (state * 48271) % 2147483647
    return (state - 1) / 2147483646
  }
}

/** The simulated network. */
export class SimNetwork<N extends NetworkNode> {
  readonly nodes = new Map<string, N>()
  /** Partition group of each node (absent: group 0). */
  readonly groups = new Map<string, number>()
  /** Bytes each node sent. */
  readonly sentBytes = new Map<string, number>()
  dials = 0
  failedDials = 0

  readonly clock: VirtualClock
  readonly model: NetworkModel
  readonly random: () => number

  constructor(clock: VirtualClock, model: NetworkModel, random: () => number) {
    this.clock = clock
    this.model = model
    this.random = random
  }

  oneWayMs(): number {
    return this.model.latencyMs - this.model.jitterMs * Math.log(1 - this.random())
  }

  /** Whether `a` can reach `b`'s host (same partition group). */
  linked(a: string, b: string): boolean {
    return (this.groups.get(a) ?? 0) === (this.groups.get(b) ?? 0)
  }

  /** Sends `bytes` from `from` to `to`; `deliver` runs on arrival unless lost, unreachable or `to` stopped. */
  send(from: string, to: string, bytes: number, deliver: () => void): void {
    this.sentBytes.set(from, (this.sentBytes.get(from) ?? 0) + bytes)
    if (this.model.loss > 0 && this.random() < this.model.loss) return
    const delay = this.oneWayMs() + bytes / this.model.bytesPerMs
    this.clock.setTimeout(() => {
      if (this.nodes.get(to)?.alive === true && this.linked(from, to)) deliver()
    }, delay)
  }

  /** Opens a connection from `from` to `to`; `done(true)` once both sides have it, `done(false)` on failure. */
  dial(from: N, to: string, done: (ok: boolean) => void): void {
    this.dials++
    const target = this.nodes.get(to)
    const rtt = 2 * this.oneWayMs()
    const fail = (afterMs: number): void => {
      this.failedDials++
      this.clock.setTimeout(() => done(false), afterMs)
    }
    if (!this.linked(from.id, to)) {
      fail(this.model.timeoutMs)
      return
    }
    if (target?.alive !== true) {
      fail(rtt)
      return
    }
    this.clock.setTimeout(
      () => {
        if (!from.alive) return
        if (!target.alive || !this.linked(from.id, to)) {
          done(false)
          return
        }
        target.onOpen(from.id)
        from.onOpen(to)
        done(true)
      },
      this.model.dialRoundTrips * rtt + this.model.dialCpuMs
    )
  }

  /** Closes the connection between `a` and `b` on both sides; `b` learns it one way later. */
  close(a: N, b: string, reason: 'reset' | 'closed'): void {
    a.onClose(b, 'closed')
    const other = this.nodes.get(b)
    this.clock.setTimeout(() => other?.onClose(a.id, reason), this.oneWayMs())
  }
}
