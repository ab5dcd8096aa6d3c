/**
 * The bootstrap loop: registers with the bootstrapper (where it takes registrations), dials the peers it gives,
 * and runs again every minute to heal partitions, or with growing backoff while no peer was reached and the view
 * is empty. Emits `bootstrap` per round and `failure` for peers that could not be dialled.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import type { BootstrapPeer, Bootstrapper } from './bootstrap.ts'
import type { Connections } from './connections.ts'
import {
  BOOTSTRAP_INTERVAL_MS,
  BOOTSTRAP_MAX_BACKOFF_MS,
  BOOTSTRAP_MIN_BACKOFF_MS,
  BOOTSTRAP_ROUND_TIMEOUT_MS,
  DIAL_TIMEOUT_MS
} from './constants.ts'
import type { RouterEvents } from './events.ts'
import type { ClusterView } from './view.ts'

/** Options of {@link BootstrapLoop}. */
export interface BootstrapLoopInit {
  libp2p: Libp2p
  bootstrapper?: Bootstrapper
  view: ClusterView
  connections: Connections
  /** This node as a bootstrap entry. */
  self(): BootstrapPeer
  shutdown: AbortSignal
  events: RouterEvents
  log: Logger
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(done, ms)
    timer.unref()
    function done(): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Bootstrap rounds, once or in a loop. */
export class BootstrapLoop {
  private readonly init: BootstrapLoopInit

  constructor(init: BootstrapLoopInit) {
    this.init = init
  }

  /** Runs one round; resolves true when at least one bootstrap peer was reached (or, without a bootstrapper, when the view has a member). */
  async once(): Promise<boolean> {
    const { bootstrapper, shutdown, events } = this.init
    if (bootstrapper === undefined) return this.init.view.size > 0
    const started = Date.now()
    const signal = AbortSignal.any([shutdown, AbortSignal.timeout(BOOTSTRAP_ROUND_TIMEOUT_MS)])
    try {
      await bootstrapper
        .register?.(this.init.self(), { signal })
        .catch((err: unknown) => this.init.log.warn({ err }, 'could not register with the bootstrapper'))
      const peers = await bootstrapper.peers({ signal })
      const { reached, others } = await this.dialAll(peers, signal)
      // A node that already has peers is fine whatever its bootstrapper answers (often only this node itself).
      if (reached === 0 && this.init.view.size === 0) {
        if (others > 0) this.init.log.warn({ peers: others }, 'no bootstrap peer could be reached')
        else if (peers.length > 0) this.init.log.warn('the bootstrapper lists no node but this one')
      }
      events.emit('bootstrap', { peers: peers.length, reached, durationMs: Date.now() - started })
      return reached > 0
    } catch (err) {
      events.emit('bootstrap', {
        peers: 0,
        reached: 0,
        durationMs: Date.now() - started,
        error: err as Error
      })
      throw err
    }
  }

  /** Dials every bootstrap peer but this node; resolves how many were reached, of how many others. */
  private async dialAll(
    peers: readonly BootstrapPeer[],
    signal: AbortSignal
  ): Promise<{ reached: number; others: number }> {
    const self = this.init.self()
    const own = new Set(self.addresses)
    const others = peers.filter((peer) => peer.id !== self.id && !peer.addresses.every((a) => own.has(a)))
    let reached = 0
    await Promise.all(
      others.map(async (peer) => {
        try {
          await this.dial(peer, AbortSignal.any([signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]))
          reached++
        } catch (err) {
          if ((err as Error).name === 'DialError' && /dial self/i.test((err as Error).message)) return
          const name = peer.id ?? peer.addresses.join(' ')
          this.init.connections.dialFailed(err, name, 'bootstrap', 'could not dial a bootstrap peer')
        }
      })
    )
    return { reached, others: others.length }
  }

  private async dial(peer: BootstrapPeer, signal: AbortSignal): Promise<void> {
    const { libp2p } = this.init
    const addresses = peer.addresses.map((a) => multiaddr(a))
    if (peer.id === undefined) {
      await libp2p.dial(addresses, { signal })
      return
    }
    const id = peerIdFromString(peer.id)
    await libp2p.peerStore.merge(id, { multiaddrs: addresses })
    await libp2p.dial(id, { signal })
  }

  /** Runs rounds until the router closes: every minute once bootstrapped, with backoff before. */
  async loop(): Promise<void> {
    const { shutdown, log } = this.init
    let backoff = BOOTSTRAP_MIN_BACKOFF_MS
    while (!shutdown.aborted) {
      let ok = false
      try {
        ok = await this.once()
      } catch (err) {
        if (!shutdown.aborted) log.warn({ err }, 'bootstrap failed; retrying')
      }
      if (ok || this.init.view.size > 0) {
        backoff = BOOTSTRAP_MIN_BACKOFF_MS
        await sleep(BOOTSTRAP_INTERVAL_MS, shutdown)
      } else {
        await sleep(backoff, shutdown)
        backoff = Math.min(backoff * 2, BOOTSTRAP_MAX_BACKOFF_MS)
      }
    }
  }
}
