/**
 * Hashing off the main thread: a blob streamed from a peer is hashed by a worker thread while the main thread
 * forwards the same bytes to the client, so verification does not halve a hop's throughput on a machine with
 * a spare core. Bytes are copied into 1 MiB batches that travel to the worker and back (recycled), and the
 * bytes in flight are bounded.
 */
import { Worker } from 'node:worker_threads'
import { createDigester, type Digest, type DigestAlgorithm } from '@kadmirror/oci'
import { HashWorkerError } from './errors.ts'

/** Bytes gathered before a batch goes to the worker. */
const BATCH_BYTES = 1024 * 1024
/** A stream's share of the pool's in-flight budget: past it, {@link StreamHasher.ready} makes the caller wait. */
const STREAM_SHARE_OF_BUDGET = 1 / 16

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const hashes = new Map()
parentPort.on('message', (m) => {
  if (m.op === 'start') hashes.set(m.id, createHash(m.algorithm))
  else if (m.op === 'update') {
    hashes.get(m.id)?.update(new Uint8Array(m.buffer, 0, m.length))
    parentPort.postMessage({ op: 'ack', id: m.id, length: m.length, buffer: m.buffer }, [m.buffer])
  } else if (m.op === 'digest') {
    const hash = hashes.get(m.id)
    hashes.delete(m.id)
    parentPort.postMessage({ op: 'digest', id: m.id, hex: hash === undefined ? '' : hash.digest('hex') })
  } else if (m.op === 'drop') hashes.delete(m.id)
})
`

/** An incremental hash of a stream. */
export interface StreamHasher {
  /** Adds bytes (copied; the caller may reuse `chunk`). */
  update(chunk: Uint8Array): void
  /** Undefined when more bytes may be added now, else a promise that resolves once the worker caught up. */
  ready(): Promise<void> | undefined
  /** Sends the bytes gathered so far to the worker (a transfer that pauses does not sit on a partial batch). */
  flush(): void
  /** The digest of everything added. Call once. */
  digest(): Promise<Digest>
  /** Forgets the hash (the transfer was abandoned). */
  abandon(): void
}

interface WorkerState {
  worker: Worker
  spare: ArrayBuffer[]
  hashes: Map<number, WorkerHash>
}

interface WorkerHash {
  acked(length: number): void
  finished(hex: string): void
  failed(error: Error): void
}

/** Worker threads that hash streams; `threads: 0` hashes on the calling thread. */
export class HashPool {
  readonly #threads: number
  readonly #budgetBytes: number
  readonly #workers: WorkerState[] = []
  /** Bytes sent to workers and not yet hashed, over all streams. */
  #inFlight = 0
  /** Streams waiting for the pool's in-flight bytes to fall: each checks whether it may go on. */
  readonly #pressure = new Set<() => void>()
  #next = 0
  #ids = 0
  #closed = false

  /**
   * @param threads worker threads (0: hash on the calling thread)
   * @param budgetBytes most bytes queued at the workers and not yet hashed, over all streams
   */
  constructor(threads: number, budgetBytes = 64 * 1024 * 1024) {
    this.#threads = threads
    this.#budgetBytes = budgetBytes
  }

  /** Starts hashing a new stream with `algorithm`. */
  create(algorithm: DigestAlgorithm): StreamHasher {
    if (this.#threads === 0 || this.#closed) return inline(algorithm)
    const state = this.#worker()
    const id = ++this.#ids
    state.worker.postMessage({ op: 'start', id, algorithm })
    let batch: ArrayBuffer | undefined
    let filled = 0
    let inFlight = 0
    const share = this.#budgetBytes * STREAM_SHARE_OF_BUDGET
    const overBudget = (): boolean => inFlight > share || (inFlight > 0 && this.#inFlight > this.#budgetBytes)
    let waiting: { resolve(): void; reject(err: Error): void } | undefined
    let waitingPromise: Promise<void> | undefined
    let result: { resolve(digest: Digest): void; reject(err: Error): void } | undefined
    let failure: Error | undefined
    const flush = (): void => {
      if (batch === undefined || filled === 0) return
      inFlight += filled
      this.#inFlight += filled
      state.worker.postMessage({ op: 'update', id, buffer: batch, length: filled }, [batch])
      batch = undefined
      filled = 0
    }
    const release = (): void => {
      if (waiting === undefined || overBudget()) return
      const w = waiting
      waiting = undefined
      waitingPromise = undefined
      this.#pressure.delete(release)
      w.resolve()
    }
    state.hashes.set(id, {
      acked: (length) => {
        inFlight -= length
        this.#inFlight -= length
        for (const check of [...this.#pressure]) check()
      },
      finished(hex) {
        state.hashes.delete(id)
        result?.resolve(`${algorithm}:${hex}` as Digest)
      },
      failed: (error) => {
        failure = error
        this.#inFlight -= inFlight
        inFlight = 0
        this.#pressure.delete(release)
        state.hashes.delete(id)
        waiting?.reject(error)
        result?.reject(error)
      }
    })
    return {
      update(chunk) {
        if (failure !== undefined) throw failure
        let offset = 0
        while (offset < chunk.byteLength) {
          batch ??= state.spare.pop() ?? new ArrayBuffer(BATCH_BYTES)
          const take = Math.min(BATCH_BYTES - filled, chunk.byteLength - offset)
          new Uint8Array(batch, filled, take).set(chunk.subarray(offset, offset + take))
          filled += take
          offset += take
          if (filled === BATCH_BYTES) flush()
        }
      },
      ready: () => {
        if (failure !== undefined) return Promise.reject(failure)
        if (!overBudget()) return undefined
        waitingPromise ??= new Promise<void>((resolve, reject) => {
          waiting = { resolve, reject }
          this.#pressure.add(release)
        })
        return waitingPromise
      },
      flush,
      digest() {
        if (failure !== undefined) return Promise.reject(failure)
        flush()
        return new Promise<Digest>((resolve, reject) => {
          result = { resolve, reject }
          state.worker.postMessage({ op: 'digest', id })
        })
      },
      abandon: () => {
        if (!state.hashes.has(id)) return
        this.#inFlight -= inFlight
        inFlight = 0
        this.#pressure.delete(release)
        state.hashes.delete(id)
        if (batch !== undefined) state.spare.push(batch)
        state.worker.postMessage({ op: 'drop', id })
      }
    }
  }

  /** Stops the workers; hashes in progress fail. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true
    const workers = this.#workers.splice(0)
    await Promise.all(workers.map((state) => state.worker.terminate()))
  }

  #worker(): WorkerState {
    if (this.#workers.length < this.#threads) {
      const worker = new Worker(WORKER_SOURCE, { eval: true })
      worker.unref()
      const state: WorkerState = { worker, spare: [], hashes: new Map() }
      worker.on(
        'message',
        (m: { op: string; id: number; length?: number; buffer?: ArrayBuffer; hex?: string }) => {
          const hash = state.hashes.get(m.id)
          if (m.op === 'ack') {
            if (state.spare.length < 8 && m.buffer !== undefined) state.spare.push(m.buffer)
            hash?.acked(m.length ?? 0)
          } else if (m.op === 'digest') hash?.finished(m.hex ?? '')
        }
      )
      const fail = (error: Error): void => {
        const index = this.#workers.indexOf(state)
        if (index >= 0) this.#workers.splice(index, 1)
        for (const hash of [...state.hashes.values()]) hash.failed(error)
      }
      worker.on('error', fail)
      worker.on('exit', (code) => fail(new HashWorkerError(`hash worker exited with code ${code}`)))
      this.#workers.push(state)
      return state
    }
    const state = this.#workers[this.#next % this.#workers.length] as WorkerState
    this.#next++
    return state
  }
}

function inline(algorithm: DigestAlgorithm): StreamHasher {
  const digester = createDigester(algorithm)
  return {
    update: (chunk) => digester.update(chunk),
    ready: () => undefined,
    flush: () => {},
    digest: async () => digester.digest(),
    abandon: () => {}
  }
}
