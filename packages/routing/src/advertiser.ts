/**
 * The advertiser keeps a ContentStore's keys advertised on a Router: every key at start, new keys as the
 * store announces them, withdrawals for removed keys, and a reprovide of each key once per advertise TTL,
 * spread evenly over the TTL so that 10 000 keys never go out at once.
 */
import { createHash } from 'node:crypto'
import type { ContentStore, StoreKey } from '@kadmirror/store'
import { type Logger, pino } from 'pino'
import {
  ADVERTISE_TTL_MS,
  ADVERTISER_BATCH_KEYS,
  ADVERTISER_EVENT_DEBOUNCE_MS,
  REPROVIDE_TICK_MS
} from './constants.ts'
import type { Router } from './router.ts'

/** Options of {@link createAdvertiser}. */
export interface AdvertiserInit {
  store: ContentStore
  router: Router
  /** How often each key is advertised again, in ms (Spegel's advertise TTL). @default {@link ADVERTISE_TTL_MS} (15 min) */
  ttlMs?: number
  /** How often due keys are collected, in ms. @default {@link REPROVIDE_TICK_MS} (15 s) */
  tickMs?: number
  /** Most keys handed to the router in one call. @default {@link ADVERTISER_BATCH_KEYS} (2000) */
  batchSize?: number
  /** How long store events are gathered before they are advertised together, in ms. @default {@link ADVERTISER_EVENT_DEBOUNCE_MS} (50 ms) */
  eventDebounceMs?: number
  logger?: Logger
}

/** A running advertiser. */
export interface Advertiser {
  /** Advertises every key of the store, then follows its events. Resolves when the first round is sent. */
  start(): Promise<void>
  /** Keys advertised now, per registry (keys without a registry count under `''`). For metrics. */
  counts(): Map<string, number>
  /** Keys advertised now per registry (`''` without one), by kind: for Spegel's `spegel_advertised_*` gauges. */
  kinds(): Map<string, AdvertisedKinds>
  /** Number of keys advertised now. */
  size(): number
  /** Stops following the store and reproviding. Keys are not withdrawn (records expire on their own). */
  close(): Promise<void>
}

/** Advertised keys of one registry by kind. */
export interface AdvertisedKinds {
  /** Tag references (`docker.io/library/nginx:1.27`). */
  tags: number
  /** Digests a tag points to: the images' manifests and indexes. */
  imageDigests: number
  /** Every advertised digest (blobs, manifests, indexes). */
  contentDigests: number
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

/** The advertiser behind {@link createAdvertiser}. */
class StoreAdvertiser implements Advertiser {
  private readonly store: ContentStore
  private readonly router: Router
  private readonly log: Logger
  private readonly ttlMs: number
  private readonly tickMs: number
  private readonly batchSize: number
  private readonly debounceMs: number
  private readonly entries = new Map<string, Entry>()
  private readonly shutdown = new AbortController()
  private tick: NodeJS.Timeout | undefined
  private pendingAdd = new Map<string, StoreKey>()
  private pendingRemove = new Set<string>()
  private flushTimer: NodeJS.Timeout | undefined
  private busy: Promise<void> = Promise.resolve()

  constructor(init: AdvertiserInit) {
    this.store = init.store
    this.router = init.router
    this.log = init.logger ?? pino({ level: 'silent' })
    this.ttlMs = init.ttlMs ?? ADVERTISE_TTL_MS
    this.tickMs = init.tickMs ?? REPROVIDE_TICK_MS
    this.batchSize = init.batchSize ?? ADVERTISER_BATCH_KEYS
    this.debounceMs = init.eventDebounceMs ?? ADVERTISER_EVENT_DEBOUNCE_MS
  }

  /** Serializes router calls so batches go out in order and never overlap. */
  private serial(task: () => Promise<void>): Promise<void> {
    this.busy = this.busy.then(task, task)
    return this.busy
  }

  private async advertise(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += this.batchSize) {
      if (this.shutdown.signal.aborted) return
      await this.router.advertise(keys.slice(i, i + this.batchSize))
    }
  }

  private schedule(key: StoreKey, now: number): void {
    const cycle = Math.floor(now / this.ttlMs) * this.ttlMs + spread(key.key, this.ttlMs)
    this.entries.set(key.key, { key, due: cycle > now ? cycle : cycle + this.ttlMs })
  }

  /** Makes `names` due at `now` (their advertisement failed: the next tick retries them). */
  private retry(names: Iterable<string>, now: number): void {
    for (const name of names) {
      const entry = this.entries.get(name)
      if (entry !== undefined) entry.due = now
    }
  }

  private flush(): Promise<void> {
    const adds = this.pendingAdd
    const removes = this.pendingRemove
    this.pendingAdd = new Map()
    this.pendingRemove = new Set()
    return this.serial(async () => {
      const now = Date.now()
      for (const key of removes) this.entries.delete(key)
      for (const key of adds.values()) this.schedule(key, now)
      try {
        if (removes.size > 0) await this.router.withdraw([...removes])
        if (adds.size > 0) await this.advertise([...adds.keys()])
      } catch (err) {
        if (!this.shutdown.signal.aborted)
          this.log.warn({ err }, 'could not advertise store changes; they go out with the next reprovide')
        this.retry(adds.keys(), now)
      }
    })
  }

  private reprovide(): Promise<void> {
    return this.serial(async () => {
      const now = Date.now()
      const due: string[] = []
      for (const [name, entry] of this.entries) {
        if (entry.due > now) continue
        due.push(name)
        entry.due += this.ttlMs * Math.max(1, Math.ceil((now - entry.due) / this.ttlMs))
      }
      if (due.length === 0) return
      try {
        await this.advertise(due)
        this.log.debug({ keys: due.length }, 'reprovided keys')
      } catch (err) {
        if (this.shutdown.signal.aborted) return
        this.log.warn({ err, keys: due.length }, 'reprovide failed; retrying on the next tick')
        this.retry(due, now)
      }
    })
  }

  private async follow(): Promise<void> {
    for await (const event of this.store.subscribe({ signal: this.shutdown.signal })) {
      if (event.type === 'added') {
        this.pendingRemove.delete(event.key.key)
        this.pendingAdd.set(event.key.key, event.key)
      } else {
        this.pendingAdd.delete(event.key.key)
        this.pendingRemove.add(event.key.key)
      }
      if (this.flushTimer !== undefined) continue
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined
        this.flush().catch((err: unknown) => this.log.error({ err }, 'advertiser flush failed'))
      }, this.debounceMs)
    }
  }

  async start(): Promise<void> {
    this.follow().catch((err: unknown) => {
      if (!this.shutdown.signal.aborted) this.log.error({ err }, 'stopped following the store')
    })
    const now = Date.now()
    const keys: StoreKey[] = []
    for await (const key of this.store.keys()) keys.push(key)
    await this.serial(async () => {
      for (const key of keys) this.schedule(key, now)
      try {
        await this.advertise(keys.map((k) => k.key))
      } catch (err) {
        this.log.warn({ err }, 'first advertisement failed; retrying on the next tick')
        this.retry(this.entries.keys(), now)
      }
    })
    this.tick = setInterval(() => {
      this.reprovide().catch((err: unknown) => this.log.error({ err }, 'reprovide failed'))
    }, this.tickMs)
    this.tick.unref()
    this.log.info({ keys: keys.length }, 'advertised the store')
  }

  counts(): Map<string, number> {
    const counts = new Map<string, number>()
    for (const { key } of this.entries.values())
      counts.set(key.registry ?? '', (counts.get(key.registry ?? '') ?? 0) + 1)
    return counts
  }

  kinds(): Map<string, AdvertisedKinds> {
    const tagged = new Set<string>()
    for (const { key } of this.entries.values()) if (key.key !== key.digest) tagged.add(key.digest)
    const kinds = new Map<string, AdvertisedKinds>()
    for (const { key } of this.entries.values()) {
      const registry = key.registry ?? ''
      let counts = kinds.get(registry)
      if (counts === undefined) {
        counts = { tags: 0, imageDigests: 0, contentDigests: 0 }
        kinds.set(registry, counts)
      }
      if (key.key !== key.digest) counts.tags++
      else {
        counts.contentDigests++
        if (tagged.has(key.digest)) counts.imageDigests++
      }
    }
    return kinds
  }

  size(): number {
    return this.entries.size
  }

  async close(): Promise<void> {
    this.shutdown.abort()
    clearInterval(this.tick)
    clearTimeout(this.flushTimer)
    await this.busy.catch(() => {})
  }
}

/** Creates an advertiser; call {@link Advertiser.start}. */
export function createAdvertiser(init: AdvertiserInit): Advertiser {
  return new StoreAdvertiser(init)
}
