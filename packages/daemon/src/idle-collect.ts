/**
 * One thorough garbage collection when the node goes idle after a burst of requests. What a burst leaves behind
 * (socket reads, response chunks, the objects of many lookups) is garbage at once but freed only by V8's next full
 * collection, which an idle node, allocating little, may not run for a long time; and the heap pages a full
 * collection frees are kept for reuse. Both stay in the node's memory, counted against its budget (bench/compare:
 * memory 5 s after the pulls). A burst: at least {@link IDLE_COLLECT_MIN_BYTES} of blob bodies or
 * {@link IDLE_COLLECT_MIN_REQUESTS} requests since the last collection; it has ended when no request came for
 * {@link IDLE_COLLECT_AFTER_MS}.
 */
import type { MirrorHandler, ResponseEvent } from '@kadmirror/mirror'
import type { Logger } from 'pino'
import { IDLE_COLLECT_AFTER_MS, IDLE_COLLECT_MIN_BYTES, IDLE_COLLECT_MIN_REQUESTS } from './constants.ts'

/** Options of {@link collectAfterBursts}. */
export interface IdleCollectInit {
  /** The mirror whose `response` events make a burst. */
  mirror: Pick<MirrorHandler, 'events'>
  /** Runs a full collection (see `fullGarbageCollection` in runtime.ts). */
  collect: () => void
  /** Quiet time that ends a burst, in ms. @default {@link IDLE_COLLECT_AFTER_MS} */
  afterMs?: number
  log?: Logger
}

/** What {@link collectAfterBursts} returns. */
export interface IdleCollector {
  /** Counts as a burst now (the node's start: loading, bootstrap, the first advertisement): a collection follows once it is quiet. */
  burst(): void
  /** Stops watching; no collection after. */
  stop(): void
}

/** Starts watching for bursts. */
export function collectAfterBursts(init: IdleCollectInit): IdleCollector {
  const afterMs = init.afterMs ?? IDLE_COLLECT_AFTER_MS
  const collect = (): void => {
    const before = process.memoryUsage.rss()
    const started = performance.now()
    init.collect()
    const durationMs = Math.round(performance.now() - started)
    init.log?.debug(
      { rssBefore: before, rssAfter: process.memoryUsage.rss(), durationMs },
      'collected after a burst'
    )
  }
  let timer: NodeJS.Timeout | undefined
  let bytes = 0
  let requests = 0
  const arm = (): void => {
    if (timer !== undefined) {
      timer.refresh()
      return
    }
    timer = setTimeout(() => {
      timer = undefined
      bytes = 0
      requests = 0
      collect()
    }, afterMs)
    timer.unref()
  }
  const onResponse = (event: ResponseEvent): void => {
    requests++
    if (event.kind === 'blob') bytes += event.bytes
    if (timer !== undefined || bytes >= IDLE_COLLECT_MIN_BYTES || requests >= IDLE_COLLECT_MIN_REQUESTS) arm()
  }
  init.mirror.events.on('response', onResponse)
  return {
    burst: arm,
    stop() {
      init.mirror.events.off('response', onResponse)
      clearTimeout(timer)
    }
  }
}
