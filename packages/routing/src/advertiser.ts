/**
 * The advertiser keeps a ContentStore's keys advertised on a Router: every key at start, new keys as the
 * store announces them, withdrawals for removed keys, and a reprovide of each key once per advertise TTL,
 * spread evenly over the TTL so that 10 000 keys never go out at once.
 */
import { createHash } from 'node:crypto'
import type { ContentStore, StoreKey } from '@kadmirror/store'
import { type Logger, pino } from 'pino'
import { ADVERTISE_TTL_MS, REPROVIDE_TICK_MS } from './constants.ts'
import type { Router } from './router.ts'

/** Options of {@link createAdvertiser}. */
export interface AdvertiserInit {
  store: ContentStore
  router: Router
  /** How often each key is advertised again, in ms; default 15 min (Spegel's advertise TTL). */
  ttlMs?: number
  /** How often due keys are collected, in ms; default 15 s. */
  tickMs?: number
  /** Most keys handed to the router in one call; default 2000. */
  batchSize?: number
  /** How long store events are gathered before they are advertised together, in ms; default 50. */
  eventDebounceMs?: number
  logger?: Logger
}

/** A running advertiser. */
export interface Advertiser {
  /** Advertises every key of the store, then follows its events. Resolves when the first round is sent. */
  start(): Promise<void>
  /** Keys advertised now, per registry (keys without a registry count under `''`). For metrics. */
  counts(): Map<string, number>
  /** Number of keys advertised now. */
  size(): number
  /** Stops following the store and reproviding. Keys are not withdrawn (records expire on their own). */
  close(): Promise<void>
}

interface Entry {
  key: StoreKey
  /** Next time this key is due for reproviding, ms since the epoch. */
  due: number
}

/** Offset of a key inside the TTL, from its hash, so reprovides spread evenly and stay put across restarts. */
function spread(key: string, ttlMs: number): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) % ttlMs
}

/** Creates an advertiser; call {@link Advertiser.start}. */
export function createAdvertiser(init: AdvertiserInit): Advertiser {
  const log = init.logger ?? pino({ level: 'silent' })
  const ttlMs = init.ttlMs ?? ADVERTISE_TTL_MS
  const tickMs = init.tickMs ?? REPROVIDE_TICK_MS
  const batchSize = init.batchSize ?? 2000
  const debounceMs = init.eventDebounceMs ?? 50
  const entries = new Map<string, Entry>()
  const shutdown = new AbortController()
  let tick: NodeJS.Timeout | undefined
  let pendingAdd = new Map<string, StoreKey>()
  let pendingRemove = new Set<string>()
  let flushTimer: NodeJS.Timeout | undefined
  let busy: Promise<void> = Promise.resolve()

  /** Serializes router calls so batches go out in order and never overlap. */
  const serial = (task: () => Promise<void>): Promise<void> => {
    busy = busy.then(task, task)
    return busy
  }

  const advertise = async (keys: string[]): Promise<void> => {
    for (let i = 0; i < keys.length; i += batchSize) {
      if (shutdown.signal.aborted) return
      await init.router.advertise(keys.slice(i, i + batchSize))
    }
  }

  const schedule = (key: StoreKey, now: number): void => {
    const cycle = Math.floor(now / ttlMs) * ttlMs + spread(key.key, ttlMs)
    entries.set(key.key, { key, due: cycle > now ? cycle : cycle + ttlMs })
  }

  const flush = (): Promise<void> => {
    const adds = pendingAdd
    const removes = pendingRemove
    pendingAdd = new Map()
    pendingRemove = new Set()
    return serial(async () => {
      const now = Date.now()
      for (const key of removes) entries.delete(key)
      for (const key of adds.values()) schedule(key, now)
      try {
        if (removes.size > 0) await init.router.withdraw([...removes])
        if (adds.size > 0) await advertise([...adds.keys()])
      } catch (err) {
        if (!shutdown.signal.aborted)
          log.warn({ err }, 'could not advertise store changes; they go out with the next reprovide')
        for (const name of adds.keys()) {
          const entry = entries.get(name)
          if (entry !== undefined) entry.due = now
        }
      }
    })
  }

  const reprovide = (): Promise<void> =>
    serial(async () => {
      const now = Date.now()
      const due: string[] = []
      for (const [name, entry] of entries) {
        if (entry.due > now) continue
        due.push(name)
        entry.due += ttlMs * Math.max(1, Math.ceil((now - entry.due) / ttlMs))
      }
      if (due.length === 0) return
      try {
        await advertise(due)
        log.debug({ keys: due.length }, 'reprovided keys')
      } catch (err) {
        if (shutdown.signal.aborted) return
        log.warn({ err, keys: due.length }, 'reprovide failed; retrying on the next tick')
        for (const name of due) {
          const entry = entries.get(name)
          if (entry !== undefined) entry.due = now
        }
      }
    })

  const follow = async (): Promise<void> => {
    for await (const event of init.store.subscribe({ signal: shutdown.signal })) {
      if (event.type === 'added') {
        pendingRemove.delete(event.key.key)
        pendingAdd.set(event.key.key, event.key)
      } else {
        pendingAdd.delete(event.key.key)
        pendingRemove.add(event.key.key)
      }
      if (flushTimer === undefined) {
        flushTimer = setTimeout(() => {
          flushTimer = undefined
          flush().catch((err: unknown) => log.error({ err }, 'advertiser flush failed'))
        }, debounceMs)
      }
    }
  }

  return {
    async start() {
      const subscription = follow()
      subscription.catch((err: unknown) => {
        if (!shutdown.signal.aborted) log.error({ err }, 'stopped following the store')
      })
      const now = Date.now()
      const keys: StoreKey[] = []
      for await (const key of init.store.keys()) keys.push(key)
      await serial(async () => {
        for (const key of keys) schedule(key, now)
        try {
          await advertise(keys.map((k) => k.key))
        } catch (err) {
          log.warn({ err }, 'first advertisement failed; retrying on the next tick')
          for (const entry of entries.values()) entry.due = now
        }
      })
      tick = setInterval(() => {
        reprovide().catch((err: unknown) => log.error({ err }, 'reprovide failed'))
      }, tickMs)
      tick.unref()
      log.info({ keys: keys.length }, 'advertised the store')
    },
    counts() {
      const counts = new Map<string, number>()
      for (const { key } of entries.values())
        counts.set(key.registry ?? '', (counts.get(key.registry ?? '') ?? 0) + 1)
      return counts
    },
    size: () => entries.size,
    async close() {
      shutdown.abort()
      clearInterval(tick)
      clearTimeout(flushTimer)
      await busy.catch(() => {})
    }
  }
}
