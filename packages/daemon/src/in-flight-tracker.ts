/**
 * In-flight advertising: when the mirror sends its client upstream for a blob (a 404 after the peers), containerd
 * downloads it into its content directory's `ingest/`. The tracker finds that download, advertises the digest at
 * once, and hands the growing file to the mirror, which serves it to peers as it arrives (flash crowds). A download
 * that ends is forgotten: committed, the blob is the store's (the advertiser keeps it advertised); abandoned or
 * stalled, its record is withdrawn.
 */
import { stat } from 'node:fs/promises'
import type { Ingest, IngestDirectory } from '@kadmirror/containerd'
import type { GrowingContent, InFlightContent } from '@kadmirror/mirror'
import type { Digest } from '@kadmirror/oci'
import type { Router } from '@kadmirror/routing'
import type { ContentStore } from '@kadmirror/store'
import type { Logger } from 'pino'
import {
  IN_FLIGHT_CHECK_MS,
  IN_FLIGHT_FIND_POLL_MS,
  IN_FLIGHT_FIND_TIMEOUT_MS,
  IN_FLIGHT_MAX_FOLLOWED,
  IN_FLIGHT_STALL_MS,
  IN_FLIGHT_STORE_CHECK_POLLS
} from './constants.ts'

/** Options of {@link InFlightTracker}. */
export interface InFlightTrackerInit {
  /** containerd's downloads in progress (an {@link IngestDirectory}). */
  ingests: Pick<IngestDirectory, 'list'>
  router: Pick<Router, 'advertise' | 'withdraw'>
  store: Pick<ContentStore, 'stat'>
  log: Pick<Logger, 'debug' | 'warn'>
  /** How long a download is looked for, in ms. Default {@link IN_FLIGHT_FIND_TIMEOUT_MS}. */
  findTimeoutMs?: number
}

/** A download being served: its file, size, and when it last grew. */
interface Tracked extends GrowingContent {
  bytes: number
  grewAt: number
  /** When the file was first found gone while the store did not hold the blob yet. */
  goneAt?: number
}

/** A digest whose download is looked for: since when (performance.now()), until when (Date.now()), scans made. */
interface Followed {
  since: number
  until: number
  scans: number
}

/**
 * containerd's downloads of blobs the mirror sent upstream, advertised and served while they arrive. However many
 * digests are looked for, the content directory's `ingest/` is read once per {@link IN_FLIGHT_FIND_POLL_MS}.
 */
export class InFlightTracker implements InFlightContent {
  private readonly init: InFlightTrackerInit
  private readonly tracked = new Map<Digest, Tracked>()
  private readonly following = new Map<Digest, Followed>()
  private readonly shutdown = new AbortController()
  private timer: NodeJS.Timeout | undefined
  private scanning = false

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

  /** Digests whose download is looked for now (at most {@link IN_FLIGHT_MAX_FOLLOWED}). */
  followed(): number {
    return this.following.size
  }

  /**
   * Looks for containerd's download of `digest` (the mirror just sent its client upstream for it) for a few seconds,
   * and advertises it once found, or once the blob is in the store (the download ended first). Past
   * {@link IN_FLIGHT_MAX_FOLLOWED} digests looked for, the oldest is given up. Never rejects.
   */
  follow(digest: Digest): void {
    if (this.tracked.has(digest) || this.following.has(digest) || this.shutdown.signal.aborted) return
    if (this.following.size >= IN_FLIGHT_MAX_FOLLOWED) {
      const oldest = this.following.keys().next().value as Digest
      this.following.delete(oldest)
    }
    this.following.set(digest, {
      since: performance.now(),
      until: Date.now() + (this.init.findTimeoutMs ?? IN_FLIGHT_FIND_TIMEOUT_MS),
      scans: 0
    })
    this.startScanning()
  }

  /** Stops following downloads (records expire on their own). */
  close(): void {
    this.shutdown.abort()
    this.following.clear()
    clearInterval(this.timer)
  }

  private startScanning(): void {
    if (this.scanning) return
    this.scanning = true
    this.scanUntilNoneFollowed()
      .catch((err: unknown) => this.init.log.warn({ err }, 'cannot follow downloads'))
      .finally(() => {
        this.scanning = false
        // Followed again between the loop's last look and now: scan again.
        if (this.following.size > 0 && !this.shutdown.signal.aborted) this.startScanning()
      })
  }

  /** Reads `ingest/` every poll while any digest is followed; each found download is tracked and advertised. */
  private async scanUntilNoneFollowed(): Promise<void> {
    while (this.following.size > 0 && !this.shutdown.signal.aborted) {
      const looked = performance.now()
      const ingests = await this.init.ingests.list()
      const scanMs = Math.round(performance.now() - looked)
      for (const ingest of ingests) {
        const followed = this.following.get(ingest.digest)
        if (followed === undefined) continue
        this.following.delete(ingest.digest)
        this.track(ingest, followed, scanMs)
      }
      await this.settleUnfound()
      if (this.following.size > 0) await new Promise((resolve) => setTimeout(resolve, IN_FLIGHT_FIND_POLL_MS))
    }
  }

  private track(ingest: Ingest, followed: Followed, scanMs: number): void {
    const { digest } = ingest
    this.tracked.set(digest, { path: ingest.dataPath, size: ingest.totalBytes, bytes: 0, grewAt: Date.now() })
    this.timer ??= setInterval(() => void this.check(), IN_FLIGHT_CHECK_MS).unref()
    // How long the scan took (a directory listing, and reads of new ingests), and how long since the mirror sent its
    // client upstream.
    const sinceMs = Math.round(performance.now() - followed.since)
    this.init.log.debug({ digest, scans: followed.scans + 1, scanMs, sinceMs }, 'found a download in flight')
    this.advertise(digest, 'advertised a download in flight')
  }

  /**
   * Gives up digests looked for too long. A small blob is often committed before a scan finds its download: every
   * few scans the store is asked (a call to containerd each), and one found there is advertised as held (peers are
   * waiting for it).
   */
  private async settleUnfound(): Promise<void> {
    const now = Date.now()
    const checks: Promise<void>[] = []
    for (const [digest, followed] of this.following) {
      if (now >= followed.until) {
        this.following.delete(digest)
        continue
      }
      if (followed.scans++ % IN_FLIGHT_STORE_CHECK_POLLS !== 1) continue
      checks.push(
        this.committed(digest).then((committed) => {
          if (!committed || !this.following.delete(digest)) return
          this.advertise(digest, 'advertised a download that ended before it was found')
        })
      )
    }
    await Promise.all(checks)
  }

  private advertise(digest: Digest, message: string): void {
    this.init.router.advertise([digest]).then(
      () => this.init.log.debug({ digest }, message),
      (err: unknown) => this.init.log.warn({ err, digest }, 'cannot advertise a download')
    )
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
