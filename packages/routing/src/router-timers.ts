/** The router's periodic work: reconcile (with redials and peer exchange while the view grows), sweeps, peer exchange. */
import type { Logger } from 'pino'
import type { Connections } from './connections.ts'
import { PEER_EXCHANGE_INTERVAL_MS, RECONCILE_INTERVAL_MS, REDIAL_EVERY_RECONCILES } from './constants.ts'
import type { LookupClient } from './lookup-client.ts'
import type { Membership } from './membership.ts'
import type { ProviderDatastore } from './provider-datastore.ts'

/** The parts the periodic work drives. */
export interface TimedParts {
  membership: Membership
  connections: Connections
  lookups: LookupClient
}

/** Starts the periodic work: reconcile (with redials and growth-time peer exchange), sweeps and peer exchange. */
export function startTimers(parts: TimedParts, datastore: ProviderDatastore, log: Logger): () => void {
  const { membership, connections, lookups } = parts
  let rounds = 0
  const reconciler = setInterval(() => {
    membership.reconcile().catch((err: unknown) => log.debug({ err }, 'reconcile failed'))
    if (rounds++ % REDIAL_EVERY_RECONCILES === REDIAL_EVERY_RECONCILES - 1 && connections.redialsWanted)
      connections.redialKnownPeers().catch((err: unknown) => log.debug({ err }, 'redial failed'))
    // While the view is still growing (a node starting, or joining a cluster), ask for peers every tick.
    if (membership.growing()) membership.exchangeWithRandomMember()
  }, RECONCILE_INTERVAL_MS)
  reconciler.unref()
  const maintenance = setInterval(() => {
    datastore.sweep()
    lookups.sweep()
    membership.exchangeWithRandomMember()
  }, PEER_EXCHANGE_INTERVAL_MS)
  maintenance.unref()
  return () => {
    clearInterval(reconciler)
    clearInterval(maintenance)
  }
}
