/**
 * A lookup's results shared by every caller of the same key: providers are appended as found, each reader
 * iterates from the start at its own pace, and the result can be kept as a cache entry once complete.
 */
import type { Provider } from './router.ts'

/** Providers of one key, filled by one lookup, read by many. */
export class SharedLookup {
  readonly providers: Provider[] = []
  /** When the first provider was pushed, ms since the epoch. */
  firstProviderAt: number | undefined
  private readonly ids = new Set<string>()
  private complete = false
  private waiters: Array<() => void> = []
  private doneCallbacks: Array<() => void> | undefined

  /** Adds a provider unless one with the same id is there; wakes readers. */
  push(provider: Provider): void {
    if (this.complete || this.ids.has(provider.id)) return
    this.ids.add(provider.id)
    this.firstProviderAt ??= Date.now()
    this.providers.push(provider)
    this.wake()
  }

  /** Marks the lookup finished; readers end after the last provider. */
  finish(): void {
    this.complete = true
    this.wake()
    const callbacks = this.doneCallbacks ?? []
    this.doneCallbacks = undefined
    for (const callback of callbacks) callback()
  }

  /** Calls `callback` once the lookup has finished (at once when it has). */
  whenDone(callback: () => void): void {
    if (this.complete) {
      callback()
      return
    }
    this.doneCallbacks ??= []
    this.doneCallbacks.push(callback)
  }

  /** Whether the lookup has finished. */
  get done(): boolean {
    return this.complete
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }

  /** Yields up to `count` providers, waiting for more while the lookup runs; ends early when `signal` aborts. */
  async *read(count: number, signal?: AbortSignal): AsyncGenerator<Provider> {
    let index = 0
    while (index < count && signal?.aborted !== true) {
      if (index < this.providers.length) {
        yield this.providers[index++] as Provider
        continue
      }
      if (this.complete) return
      await new Promise<void>((resolve) => {
        const onAbort = (): void => resolve()
        signal?.addEventListener('abort', onAbort, { once: true })
        this.waiters.push(() => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        })
      })
    }
  }
}
