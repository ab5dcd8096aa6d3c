/**
 * Fan-out of store events to any number of async-iterator subscribers, each with its own queue.
 */
import type { StoreEvent, SubscribeOptions } from './content-store.ts'

interface Subscriber {
  queue: StoreEvent[]
  /** Index of the next event to deliver; the queue is compacted when drained. */
  head: number
  wake: (() => void) | undefined
  done: boolean
}

/** Delivers published events to every current subscriber, in order; ends them all on close. */
export class EventHub {
  private readonly subscribers = new Set<Subscriber>()
  private closed = false

  /** Queues `events` for every subscriber. */
  publish(events: readonly StoreEvent[]): void {
    if (events.length === 0) return
    for (const s of this.subscribers) {
      s.queue.push(...events)
      s.wake?.()
    }
  }

  /** Ends every subscription; later subscriptions end at once. */
  close(): void {
    this.closed = true
    for (const s of this.subscribers) {
      s.done = true
      s.wake?.()
    }
    this.subscribers.clear()
  }

  /** A new subscription that sees events published from now on. */
  subscribe(options: SubscribeOptions = {}): AsyncIterable<StoreEvent> {
    const subscriber: Subscriber = { queue: [], head: 0, wake: undefined, done: this.closed }
    const end = (): void => {
      subscriber.done = true
      this.subscribers.delete(subscriber)
      subscriber.wake?.()
    }
    if (!subscriber.done) this.subscribers.add(subscriber)
    if (options.signal?.aborted === true) end()
    options.signal?.addEventListener('abort', end, { once: true })
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<StoreEvent>> => {
          while (subscriber.head === subscriber.queue.length && !subscriber.done) {
            subscriber.queue.length = 0
            subscriber.head = 0
            await new Promise<void>((resolve) => {
              subscriber.wake = resolve
            })
            subscriber.wake = undefined
          }
          if (subscriber.head < subscriber.queue.length) {
            return { value: subscriber.queue[subscriber.head++] as StoreEvent, done: false }
          }
          options.signal?.removeEventListener('abort', end)
          return { value: undefined, done: true }
        },
        return: async (): Promise<IteratorResult<StoreEvent>> => {
          end()
          subscriber.queue.length = 0
          subscriber.head = 0
          options.signal?.removeEventListener('abort', end)
          return { value: undefined, done: true }
        }
      })
    }
  }
}
