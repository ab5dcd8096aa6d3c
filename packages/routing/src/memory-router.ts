/**
 * `MemoryRouter`: routers that find each other through one in-process {@link MemoryNetwork}, for tests and for
 * embedding the mirror without a DHT.
 */
import { randomUUID } from 'node:crypto'
import { DEFAULT_LOOKUP_COUNT } from './constants.ts'
import { type LookupOptions, type Provider, type Router, RouterClosedError } from './router.ts'

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
}

/** Routers that share advertisements in memory. */
export interface MemoryNetwork {
  /** Creates a router on this network. */
  createRouter(init: MemoryRouterInit): MemoryRouter
}

/** Creates an empty in-memory network. */
export function createMemoryNetwork(): MemoryNetwork {
  const routers = new Map<string, Provider>()
  const records = new Map<string, Set<string>>()

  return {
    createRouter(init) {
      const id = init.id ?? randomUUID()
      if (routers.has(id)) throw new Error(`a router with id ${id} is already on this network`)
      const self: Provider = { id, addresses: [], registryUrl: init.registryUrl.replace(/\/+$/, '') }
      routers.set(id, self)
      let closed = false
      const check = (): void => {
        if (closed) throw new RouterClosedError()
      }
      const withdraw = (keys: Iterable<string>): void => {
        for (const key of keys) {
          const holders = records.get(key)
          holders?.delete(id)
          if (holders?.size === 0) records.delete(key)
        }
      }
      return {
        id,
        async advertise(keys) {
          check()
          for (const key of keys) {
            let holders = records.get(key)
            if (holders === undefined) {
              holders = new Set()
              records.set(key, holders)
            }
            holders.add(id)
          }
        },
        async withdraw(keys) {
          check()
          withdraw(keys)
        },
        lookup(key, options: LookupOptions = {}) {
          check()
          const count = options.count ?? DEFAULT_LOOKUP_COUNT
          const holders = [...(records.get(key) ?? [])].filter((holder) => holder !== id)
          return (async function* () {
            let yielded = 0
            for (const holder of holders) {
              if (yielded >= count || options.signal?.aborted === true) return
              const provider = routers.get(holder)
              if (provider === undefined) continue
              yielded++
              yield { ...provider, addresses: [...provider.addresses] }
            }
          })()
        },
        async ready() {
          check()
          return routers.size > 1
        },
        async close() {
          if (closed) return
          closed = true
          routers.delete(id)
          withdraw([...records.keys()])
        }
      }
    }
  }
}
