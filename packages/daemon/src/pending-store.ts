/**
 * A store that is still being opened: a node whose containerd is not up yet (a systemd unit started before it, a
 * socket that appears late) runs anyway. Until the real store opens, it holds nothing — every lookup misses, so the
 * mirror answers 404 and pulls fall back upstream — while the open is retried with backoff and each failure logged
 * in one line. Once open, every call goes to the real store, and subscribers first get an `added` event for every
 * key it holds (the advertiser learns them as it would at start).
 */

import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ByteRange, Digest } from '@kadmirror/oci'
import {
  type ContentInfo,
  ContentNotFoundError,
  type ContentReader,
  type ContentStore,
  type StoreEvent,
  type StoreKey,
  type SubscribeOptions
} from '@kadmirror/store'
import type { Logger } from 'pino'
import { STORE_RETRY_MAX_BACKOFF_MS, STORE_RETRY_MIN_BACKOFF_MS } from './constants.ts'

/** A {@link ContentStore} that opens in the background, retrying with backoff. */
export class PendingStore implements ContentStore {
  private inner: ContentStore | undefined
  private readonly shutdown = new AbortController()
  /** Resolves with the real store once it is open, or undefined when closed first. */
  readonly opened: Promise<ContentStore | undefined>

  constructor(open: () => Promise<ContentStore>, log: Logger, what: string) {
    this.opened = this.keepOpening(open, log, what)
  }

  private async keepOpening(
    open: () => Promise<ContentStore>,
    log: Logger,
    what: string
  ): Promise<ContentStore | undefined> {
    let backoff = STORE_RETRY_MIN_BACKOFF_MS
    while (!this.shutdown.signal.aborted) {
      try {
        const store = await this.unlessClosed(open())
        if (store === undefined) return undefined
        this.inner = store
        log.info(`${what} is open`)
        return store
      } catch (err) {
        log.warn(
          { retryInMs: backoff },
          `cannot open ${what}: ${(err as Error).message}; the mirror answers 404 until it opens`
        )
      }
      // Ends early when the store is closed (the abort rejects; nothing is left on the signal).
      await sleep(backoff, undefined, { signal: this.shutdown.signal }).catch(() => {})
      backoff = Math.min(backoff * 2, STORE_RETRY_MAX_BACKOFF_MS)
    }
    return undefined
  }

  /** `opening`'s store, or undefined once the store is closed first (a store that opens later is closed at once). */
  private unlessClosed(opening: Promise<ContentStore>): Promise<ContentStore | undefined> {
    const signal = this.shutdown.signal
    const closed = new Promise<undefined>((resolve) =>
      signal.addEventListener('abort', () => resolve(undefined), { once: true })
    )
    opening
      .then(async (store) => {
        if (signal.aborted) await store.close()
      })
      .catch(() => {})
    return Promise.race([opening, closed])
  }

  async *keys(): AsyncIterable<StoreKey> {
    if (this.inner !== undefined) yield* this.inner.keys()
  }

  async resolve(reference: string): Promise<Digest | undefined> {
    return this.inner?.resolve(reference)
  }

  async stat(digest: Digest): Promise<ContentInfo | undefined> {
    return this.inner?.stat(digest)
  }

  async read(digest: Digest, range?: ByteRange): Promise<Readable> {
    if (this.inner === undefined) throw new ContentNotFoundError(digest)
    return this.inner.read(digest, range)
  }

  async open(digest: Digest): Promise<ContentReader | undefined> {
    return this.inner?.open?.(digest)
  }

  async *subscribe(options: SubscribeOptions = {}): AsyncIterable<StoreEvent> {
    // A subscriber that came before the store opened listed no keys: it gets them as `added` events first.
    const openAtCall = this.inner !== undefined
    const store = this.inner ?? (await this.opened)
    if (store === undefined || options.signal?.aborted === true) return
    const events = store.subscribe(options)[Symbol.asyncIterator]()
    // Started before the listing, so no change between the two is lost (a key may come twice).
    let next = events.next()
    if (!openAtCall) for await (const key of store.keys()) yield { type: 'added', key }
    for (let event = await next; event.done !== true; event = await next) {
      next = events.next()
      yield event.value
    }
  }

  async close(): Promise<void> {
    this.shutdown.abort()
    await (await this.opened)?.close()
  }
}
