/**
 * `MemoryRouter`: routers that find each other through one in-process {@link MemoryNetwork}, for tests and for
 * embedding the mirror without a DHT. They emit the same `lookup`, `provide` and `withdraw` events as the libp2p
 * router.
 */
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { ClaimTable } from './claim-table.ts'
import {
  CLAIM_HOLD_MS,
  CLAIM_TABLE_MAX_ENTRIES,
  CLAIM_WAITING_NAMED,
  DEFAULT_LOOKUP_COUNT
} from './constants.ts'
import { RouterClosedError } from './errors.ts'
import type { RouterEventMap, RouterEvents } from './events.ts'
import type { ClaimAnswer, ClaimOptions, LookupOptions, Provider, Router } from './router.ts'

/** Options of {@link MemoryNetwork.createRouter}. */
export interface MemoryRouterInit {
  /** The router's id; default a random UUID. */
  id?: string
  /** Base URL of this node's registry mirror, given to peers that look up its keys. */
  registryUrl: string
}

/** A Router on a {@link MemoryNetwork}. */
export interface MemoryRouter extends Router {
  readonly id: string
  /** What the router reports: `lookup`, `provide` and `withdraw`. */
  readonly events: RouterEvents
}

/** Routers that share advertisements in memory. */
export interface MemoryNetwork {
  /** Creates a router on this network. @throws {Error} when a router with the same id is on it. */
  createRouter(init: MemoryRouterInit): MemoryRouter
}

/** Options of {@link createMemoryNetwork}. */
export interface MemoryNetworkInit {
  /** How long a claim is held, in ms. @default {@link CLAIM_HOLD_MS} (10 s) */
  claimHoldMs?: number
}

/** The routers of a network, who holds which key, and the claims (one arbiter for the whole network). */
class Registry {
  readonly routers = new Map<string, Provider>()
  private readonly records = new Map<string, Set<string>>()
  private readonly claims: ClaimTable

  constructor(init: MemoryNetworkInit) {
    this.claims = new ClaimTable({
      holdMs: init.claimHoldMs ?? CLAIM_HOLD_MS,
      maxEntries: CLAIM_TABLE_MAX_ENTRIES,
      maxWaiting: CLAIM_WAITING_NAMED
    })
  }

  /** `self`'s claim on `key` (or, with `peek`, who holds it); the claim of a router that left is void. */
  claim(key: string, self: string, peek: boolean): ClaimAnswer {
    const held = this.claims.stateOf(key)
    if (held !== undefined && !this.routers.has(held.holder.id)) this.claims.release(key)
    const claimer = { id: self, idBytes: new Uint8Array(), addresses: [] }
    const state = peek ? this.claims.stateOf(key) : this.claims.claim(key, claimer)
    if (state?.holder.id === self) return { won: true }
    const holder = state === undefined ? undefined : this.routers.get(state.holder.id)
    if (holder === undefined) return { won: false }
    const waiting = (state?.waiting ?? []).flatMap((w) => {
      const router = w.id === self ? undefined : this.routers.get(w.id)
      return router === undefined ? [] : [copy(router)]
    })
    return { won: false, holder: copy(holder), waiting }
  }

  add(id: string, keys: Iterable<string>): void {
    for (const key of keys) {
      let holders = this.records.get(key)
      if (holders === undefined) {
        holders = new Set()
        this.records.set(key, holders)
      }
      holders.add(id)
    }
  }

  remove(id: string, keys: Iterable<string> = [...this.records.keys()]): void {
    for (const key of keys) {
      const holders = this.records.get(key)
      holders?.delete(id)
      if (holders?.size === 0) this.records.delete(key)
    }
  }

  /** The providers of `key` but `self`, at most `count`, copied. */
  providers(key: string, self: string, count: number): Provider[] {
    const out: Provider[] = []
    for (const holder of this.records.get(key) ?? []) {
      const provider = this.routers.get(holder)
      if (holder === self || provider === undefined) continue
      if (out.length === count) break
      // Routers leave the network when they close, so every record is of a live router.
      out.push(copy(provider))
    }
    return out
  }
}

/** A provider of the network, copied (callers may change what they are given). */
function copy(provider: Provider): Provider {
  return { ...provider, addresses: [...provider.addresses], connected: true }
}

async function* yieldProviders(
  providers: Provider[],
  signal: AbortSignal | undefined
): AsyncGenerator<Provider> {
  for (const provider of providers) {
    if (signal?.aborted === true) return
    yield provider
  }
}

function createRouterOn(registry: Registry, init: MemoryRouterInit): MemoryRouter {
  const id = init.id ?? randomUUID()
  if (registry.routers.has(id)) throw new Error(`a router with id ${id} is already on this network`)
  registry.routers.set(id, { id, addresses: [], registryUrl: init.registryUrl.replace(/\/+$/, '') })
  const events: RouterEvents = new EventEmitter<RouterEventMap>()
  let closed = false
  const check = (): void => {
    if (closed) throw new RouterClosedError()
  }
  return {
    id,
    events,
    async advertise(keys) {
      check()
      registry.add(id, keys)
      events.emit('provide', { keys: keys.length, peers: 0, failures: 0, durationMs: 0, reason: 'advertise' })
    },
    async withdraw(keys) {
      check()
      registry.remove(id, keys)
      events.emit('withdraw', { keys: keys.length, peers: 0, failures: 0, durationMs: 0 })
    },
    lookup(key, options: LookupOptions = {}) {
      check()
      const providers = registry.providers(key, id, options.count ?? DEFAULT_LOOKUP_COUNT)
      events.emit('lookup', {
        ...{ key, source: 'network', durationMs: 0, providers: providers.length, peersAsked: 0, rounds: 0 },
        ...(providers.length > 0 ? { firstProviderMs: 0 } : {})
      })
      return yieldProviders(providers, options.signal)
    },
    async claim(key, options: ClaimOptions = {}) {
      check()
      options.signal?.throwIfAborted()
      return registry.claim(key, id, options.peek === true)
    },
    async ready() {
      check()
      return registry.routers.size > 1
    },
    async close() {
      if (closed) return
      closed = true
      registry.routers.delete(id)
      registry.remove(id)
    }
  }
}

/** Creates an empty in-memory network. */
export function createMemoryNetwork(init: MemoryNetworkInit = {}): MemoryNetwork {
  const registry = new Registry(init)
  return { createRouter: (init) => createRouterOn(registry, init) }
}
