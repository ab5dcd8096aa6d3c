/**
 * A large blob from several peers at once (spool mode): the blob is cut into pieces (piece-plan.ts), up to
 * `maxProviders` peers each fetch a piece at a time with a Range request and write it into the spool file at its
 * offset, the landed prefix is hashed as it grows (spool-hashing.ts), and the answer goes out only once the whole
 * digest matches, as for one peer. A peer that fails, stalls or trickles gives its piece back from the byte it
 * reached and another peer is recruited; a peer that finishes takes the next piece (so faster peers take more); with
 * nothing left unclaimed an idle peer takes the back half of the slowest piece. Memory: each peer's read buffers
 * (the blob client's, 4 × 256 KiB) and one 1 MiB hashing buffer per transfer — 5 MiB with 4 peers; everything else
 * is in the spool file.
 */
import { type BlobPath, digestAlgorithm } from '@kadmirror/oci'
import type { Provider } from '@kadmirror/routing'
import type { ContentReader } from '@kadmirror/store'
import {
  type BlobSink,
  type ReceiveResult,
  readBody,
  receiveBlob,
  type SpoolSink,
  type TransferContext
} from './blob-transfer.ts'
import { PeerAnswerError } from './errors.ts'
import type { PeerBody } from './peer-body.ts'
import { type PeerBlob, type PeerPiece, reportFailure } from './peer-fetch.ts'
import { LandedBytes, type Piece, PiecePlan } from './piece-plan.ts'
import { SpoolHashing } from './spool-hashing.ts'

/** How a blob is cut and how many peers fetch it at once. */
export interface PieceSettings {
  /** Bytes per piece. */
  pieceBytes: number
  /** Most peers fetching pieces of one blob at once. */
  maxProviders: number
  /** Least bytes either part of a split piece keeps. */
  minSplitBytes: number
}

/** Where a piece transfer gets its peers and their bytes. */
export interface PieceSources {
  /** The first peer's answer: the whole blob's body from byte 0. */
  first: PeerBlob & { body: PeerBody }
  /** Another provider of the blob (waiting at most `waitMs`), or undefined when none is left. */
  next(waitMs: number): Promise<Provider | undefined>
  /** Asks `provider` for bytes `[start, end)`. */
  open(provider: Provider, start: number, end: number): Promise<PeerPiece>
}

/** Which bytes each peer sent (`[start, end)` ranges), to find the liar when the digest does not match. */
export type Contributions = Map<string, { provider: Provider; ranges: [number, number][] }>

/** The state of one piece transfer, shared by its workers. */
interface PieceRun {
  context: TransferContext
  settings: PieceSettings
  path: BlobPath
  size: number
  plan: PiecePlan
  landed: LandedBytes
  hashing: SpoolHashing
  spool: SpoolSink
  sources: PieceSources
  contributions: Contributions
  workersStarted: number
}

/**
 * Receives the blob at `path` (`size` bytes) into `spool` from several peers; resolves how it ended and who sent
 * which bytes.
 */
export async function receiveInPieces(
  context: TransferContext,
  settings: PieceSettings,
  path: BlobPath,
  size: number,
  sources: PieceSources,
  spool: SpoolSink
): Promise<{ result: ReceiveResult; contributions: Contributions }> {
  const landed = new LandedBytes()
  const hasher = context.hashes.create(digestAlgorithm(path.digest))
  const run: PieceRun = {
    ...{ context, settings, path, size, spool, sources, landed },
    plan: new PiecePlan(size, settings.pieceBytes, settings.minSplitBytes),
    hashing: new SpoolHashing(hasher, spool.reader(size), landed),
    contributions: new Map(),
    workersStarted: 0
  }
  let digested = false
  try {
    await runWorkers(run)
    const contributions = run.contributions
    if (spool.gone) return { result: { kind: 'gone' }, contributions }
    const unfinished = { kind: 'unfinished', position: landed.prefixEnd } as const
    if (!run.plan.done || spool.failure !== undefined) return { result: unfinished, contributions }
    const flushed = await spool.flushed().then(
      () => true,
      () => false
    )
    if (!flushed) return { result: unfinished, contributions }
    digested = true
    const actual = await run.hashing.digest(size)
    const contributors = [...contributions.values()].map((c) => c.provider)
    if (actual !== path.digest) return { result: { kind: 'mismatch', contributors, actual }, contributions }
    return { result: { kind: 'verified', contributors }, contributions }
  } finally {
    if (!digested) run.hashing.abandon()
  }
}

/**
 * Starts the first peer's worker, recruits more while pieces are left, and resolves when every worker ended. A peer
 * whose worker ran out of pieces waits idle: when a failed peer gives its piece back, the idle ones start again
 * before new providers are asked.
 */
async function runWorkers(run: PieceRun): Promise<void> {
  const running = new Set<Promise<void>>()
  const idle: Provider[] = []
  const start = (provider: Provider, body?: PeerBody): void => {
    run.workersStarted++
    const worker = runWorker(run, provider, `${provider.id}/${run.workersStarted}`, body).then((ended) => {
      if (ended === 'idle') idle.push(provider)
    })
    running.add(worker)
    void worker.finally(() => running.delete(worker))
  }
  start(run.sources.first.provider, run.sources.first.body)
  await recruit(run, running, start, 0)
  while (running.size > 0) {
    await Promise.race(running)
    if (run.plan.done || run.spool.gone || run.spool.failure !== undefined) continue
    while (run.plan.unclaimed > 0 && idle.length > 0 && running.size < run.settings.maxProviders)
      start(idle.shift() as Provider)
    await recruit(run, running, start, running.size === 0 ? run.context.fetch.resolveTimeoutMs : 0)
  }
}

/** Starts workers on more providers, up to the limits, while bytes are left to fetch. */
async function recruit(
  run: PieceRun,
  running: Set<Promise<void>>,
  start: (provider: Provider) => void,
  waitMs: number
): Promise<void> {
  const { maxProviders } = run.settings
  const budget = maxProviders + run.context.fetch.maxAttempts
  while (!run.plan.done && running.size < maxProviders && run.workersStarted < budget) {
    const provider = await run.sources.next(waitMs)
    if (provider === undefined) return
    start(provider)
  }
}

/**
 * One peer's loop: a piece at a time until none is left (`idle`) or the peer fails (`failed`, reported). Never
 * rejects.
 */
async function runWorker(
  run: PieceRun,
  provider: Provider,
  name: string,
  first?: PeerBody
): Promise<'idle' | 'failed' | 'stopped'> {
  let body = first
  let piece = first === undefined ? undefined : run.plan.claimAt(0, name)
  if (first !== undefined && piece === undefined) first.discard()
  for (;;) {
    if (piece === undefined) {
      piece = run.plan.claim(name) ?? run.plan.split(name)
      if (piece === undefined) return 'idle'
      try {
        body = (await run.sources.open(provider, piece.next, piece.end)).body
      } catch (err) {
        run.plan.giveBack(piece)
        return failed(run, provider, err)
      }
    }
    const sink = new PieceSink(run, provider, name, piece)
    try {
      await readBody(run.context, body as PeerBody, run.size, undefined, sink, { position: piece.next })
      body?.discard()
      const left = sink.current
      if (left !== undefined && left.next < left.end && !run.spool.gone && run.spool.failure === undefined)
        throw new PeerAnswerError(`peer ended its answer at byte ${left.next}, before ${left.end}`)
    } catch (err) {
      body?.discard()
      if (sink.current !== undefined) run.plan.giveBack(sink.current)
      if (run.spool.gone || run.spool.failure !== undefined) return 'stopped'
      return failed(run, provider, err)
    }
    if (sink.current !== undefined) run.plan.giveBack(sink.current)
    if (run.spool.gone || run.spool.failure !== undefined) return 'stopped'
    piece = undefined
    body = undefined
  }
}

function failed(run: PieceRun, provider: Provider, err: unknown): 'failed' {
  reportFailure(run.context.fetch, run.path.digest, provider, err)
  run.context.log.info(
    { peer: provider.id, digest: run.path.digest, err },
    'peer failed a piece; another takes it'
  )
  return 'failed'
}

/**
 * Takes one peer's body into the spool: the bytes of the piece held, then — while the body goes on and the next
 * piece is unclaimed — that piece too; stops the body at the first byte it may not take.
 */
class PieceSink implements BlobSink {
  readonly #run: PieceRun
  readonly #provider: Provider
  readonly #name: string
  /** The piece being received; undefined once the body may not go on. */
  current: Piece | undefined

  constructor(run: PieceRun, provider: Provider, name: string, piece: Piece) {
    this.#run = run
    this.#provider = provider
    this.#name = name
    this.current = piece
  }

  get gone(): boolean {
    return this.#run.spool.gone
  }

  get failure(): unknown {
    return this.#run.spool.failure
  }

  write(chunk: Buffer, position: number, release: () => void): Promise<boolean> | undefined {
    const taken = this.#take(chunk.byteLength, position)
    if (taken === 0) {
      release()
      return Promise.resolve(false)
    }
    this.#record(position, position + taken)
    const run = this.#run
    const written = run.spool.write(chunk.subarray(0, taken), position, () => {
      if (run.spool.failure === undefined) {
        run.landed.add(position, position + taken)
        run.hashing.kick()
      }
      release()
    })
    if (taken < chunk.byteLength || this.current === undefined) return Promise.resolve(false)
    return written
  }

  /** How many of `length` bytes at `position` the pieces held may take (going on to unclaimed next pieces). */
  #take(length: number, position: number): number {
    const { plan } = this.#run
    let taken = 0
    while (taken < length && this.current !== undefined) {
      const piece: Piece = this.current
      if (piece.next === piece.end) {
        this.current = plan.claimAt(piece.end, this.#name)
        continue
      }
      if (piece.next !== position + taken)
        throw new PeerAnswerError(`piece bytes out of order at ${position}`)
      const n = Math.min(length - taken, piece.end - piece.next)
      plan.received(piece, n)
      taken += n
    }
    return taken
  }

  #record(start: number, end: number): void {
    const entry = this.#run.contributions.get(this.#provider.id) ?? { provider: this.#provider, ranges: [] }
    this.#run.contributions.set(this.#provider.id, entry)
    const last = entry.ranges.at(-1)
    if (last !== undefined && last[1] === start) last[1] = end
    else entry.ranges.push([start, end])
  }
}

/** Bytes compared at a time when looking for a liar's bytes. */
const COMPARE_BYTES = 1024 * 1024

/** The contributors whose ranges in `suspect` differ from the same bytes of `good`. */
async function differing(
  suspect: ContentReader,
  good: ContentReader,
  contributions: Contributions
): Promise<Provider[]> {
  const a = Buffer.allocUnsafe(COMPARE_BYTES)
  const b = Buffer.allocUnsafe(COMPARE_BYTES)
  const liars: Provider[] = []
  for (const { provider, ranges } of contributions.values()) {
    const differs = async (): Promise<boolean> => {
      for (const [start, end] of ranges)
        for (let at = start; at < end; at += COMPARE_BYTES) {
          const length = Math.min(COMPARE_BYTES, end - at)
          const [x, y] = await Promise.all([suspect.read(a, 0, length, at), good.read(b, 0, length, at)])
          if (x !== length || y !== length || !a.subarray(0, length).equals(b.subarray(0, length)))
            return true
        }
      return false
    }
    if (await differs()) liars.push(provider)
  }
  return liars
}

/**
 * After a piece transfer's digest did not match: fetches the blob whole from one contributor at a time (each alone,
 * no resume from another) into a new spool until one copy verifies; resolves that spool and the peers that lied —
 * those whose own copy mismatched, and those whose pieces differ from the verified copy. No spool when none verified.
 */
export async function recoverFromMismatch(
  context: TransferContext,
  path: BlobPath,
  size: number,
  failed: { spool: SpoolSink; contributions: Contributions },
  open: (provider: Provider) => Promise<PeerBlob>,
  createSpool: () => Promise<SpoolSink>
): Promise<{ spool?: SpoolSink; liars: Provider[] }> {
  const liars: Provider[] = []
  const byBytes = [...failed.contributions.values()].sort((x, y) => bytesOf(y.ranges) - bytesOf(x.ranges))
  for (const { provider } of byBytes) {
    const spool = await createSpool()
    let keep = false
    try {
      const answer = await open(provider).catch(() => undefined)
      if (answer === undefined) continue
      const result = await receiveBlob(context, path, size, answer, async () => ({}), spool)
      if (result.kind === 'gone') return { liars }
      if (result.kind === 'mismatch') liars.push(provider)
      if (result.kind !== 'verified') continue
      await spool.flushed()
      const others = await differing(failed.spool.reader(size), spool.reader(size), failed.contributions)
      keep = true
      return { spool, liars: [...liars, ...others.filter((p) => !liars.includes(p))] }
    } catch {
    } finally {
      if (!keep) await spool.close()
    }
  }
  return { liars }
}

function bytesOf(ranges: [number, number][]): number {
  return ranges.reduce((sum, [start, end]) => sum + end - start, 0)
}
