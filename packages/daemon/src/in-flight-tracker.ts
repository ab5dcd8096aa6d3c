/**
 * In-flight advertising: when the mirror sends its client upstream for a blob (a 404 after the peers), containerd
 * downloads it into its content directory's `ingest/`. The tracker finds that download, advertises the digest at
 * once, and hands the growing file to the mirror, which serves it to peers as it arrives (flash crowds). A download
 * that ends is forgotten: committed, the blob is the store's (the advertiser keeps it advertised); abandoned or
 * stalled, its record is withdrawn.
 */
import { stat } from 'node:fs/promises'
import type { IngestDirectory } from '@kadmirror/containerd'
import type { GrowingContent, InFlightContent } from '@kadmirror/mirror'
import type { Digest } from '@kadmirror/oci'
import type { Router } from '@kadmirror/routing'
import type { ContentStore } from '@kadmirror/store'
import type { Logger } from 'pino'
import {
  IN_FLIGHT_CHECK_MS,
  IN_FLIGHT_FIND_POLL_MS,
  IN_FLIGHT_FIND_TIMEOUT_MS,
  IN_FLIGHT_STALL_MS,
  IN_FLIGHT_STORE_CHECK_POLLS
} from './constants.ts'

/** Options of {@link InFlightTracker}. */
export interface InFlightTrackerInit {
  ingests: IngestDirectory
  router: Router
  store: ContentStore
  log: Logger
}

/** A download being served: its file, size, and when it last grew. */
interface Tracked extends GrowingContent {
  bytes: number
  grewAt: number
  /** When the file was first found gone while the store did not hold the blob yet. */
  goneAt?: number
}

/** containerd's downloads of blobs the mirror sent upstream, advertised and served while they arrive. */
export class InFlightTracker implements InFlightContent {
  private readonly init: InFlightTrackerInit
  private readonly tracked = new Map<Digest, Tracked>()
  private readonly following = new Set<Digest>()
  private readonly shutdown = new AbortController()
  private timer: NodeJS.Timeout | undefined

  constructor(init: InFlightTrackerInit) {
    this.init = init
  }

  /** The download of `digest` being served, or undefined. */
  async find(digest: Digest): Promise<GrowingContent | undefined> {
    const tracked = this.tracked.get(digest)
    return tracked === undefined ? undefined : { path: tracked.path, size: tracked.size }
  }

  /** Downloads advertised now. */
  size(): number {
    return this.tracked.size
  }

  /**
   * Looks for containerd's download of `digest` (the mirror just sent its client upstream for it) for a few seconds,
   * and advertises it once found, or once the blob is in the store (the download ended first). Never rejects.
   */
  follow(digest: Digest): void {
    if (this.tracked.has(digest) || this.following.has(digest) || this.shutdown.signal.aborted) return
    this.following.add(digest)
    this.findAndAdvertise(digest)
      .catch((err: unknown) => this.init.log.warn({ err, digest }, 'cannot follow a download'))
      .finally(() => this.following.delete(digest))
  }

  /** Stops following downloads (records expire on their own). */
  close(): void {
    this.shutdown.abort()
    clearInterval(this.timer)
  }

  private async findAndAdvertise(digest: Digest): Promise<void> {
    const followed = performance.now()
    const deadline = Date.now() + IN_FLIGHT_FIND_TIMEOUT_MS
    for (let poll = 0; Date.now() < deadline && !this.shutdown.signal.aborted; poll++) {
      const looked = performance.now()
      const ingest = await this.init.ingests.find(digest)
      if (ingest !== undefined) {
        this.tracked.set(digest, {
          path: ingest.dataPath,
          size: ingest.totalBytes,
          bytes: 0,
          grewAt: Date.now()
        })
        this.timer ??= setInterval(() => void this.check(), IN_FLIGHT_CHECK_MS).unref()
        // How long the last look took (a directory listing and two reads per ingest: file I/O queues behind the
        // spools' on a busy node), and how long since the mirror sent its client upstream.
        const findMs = Math.round(performance.now() - looked)
        const sinceMs = Math.round(performance.now() - followed)
        this.init.log.debug({ digest, polls: poll + 1, findMs, sinceMs }, 'found a download in flight')
        await this.init.router.advertise([digest])
        this.init.log.debug({ digest, bytes: ingest.totalBytes }, 'advertised a download in flight')
        return
      }
      // A small blob is often committed before the first look: advertised as held (peers are waiting for it). The
      // store is asked every few polls only (a call to containerd each).
      if (poll % IN_FLIGHT_STORE_CHECK_POLLS === 1 && (await this.committed(digest))) {
        await this.init.router.advertise([digest])
        this.init.log.debug({ digest }, 'advertised a download that ended before it was found')
        return
      }
      await new Promise((resolve) => setTimeout(resolve, IN_FLIGHT_FIND_POLL_MS))
    }
  }

  private async committed(digest: Digest): Promise<boolean> {
    return (await this.init.store.stat(digest).catch(() => undefined)) !== undefined
  }

  /** Forgets downloads that ended; withdraws those that were abandoned or stalled. */
  private async check(): Promise<void> {
    const now = Date.now()
    for (const [digest, tracked] of this.tracked) {
      const bytes = await stat(tracked.path).then(
        (info) => info.size,
        () => undefined
      )
      if (bytes !== undefined && bytes > tracked.bytes) {
        tracked.bytes = bytes
        tracked.grewAt = now
      }
      if (bytes !== undefined && now - tracked.grewAt < IN_FLIGHT_STALL_MS) continue
      if (bytes === undefined && (await this.committed(digest))) {
        this.tracked.delete(digest) // committed: the store's content now
        continue
      }
      // Gone without a commit (containerd commits the file before its metadata: give it one more check), or stalled.
      if (bytes === undefined && tracked.goneAt === undefined) {
        tracked.goneAt = now
        continue
      }
      this.tracked.delete(digest)
      if (!this.shutdown.signal.aborted) await this.init.router.withdraw([digest]).catch(() => {})
    }
    if (this.tracked.size === 0) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }
}
