/**
 * What the debug page shows, kept from events and read from the node's parts: the peers with their addresses, the
 * images the node holds, the last successful mirror request, the most recent requests with their source.
 */
import type { MirrorHandler, ResponseEvent } from '@kadmirror/mirror'
import type { Libp2pRouter } from '@kadmirror/routing'
import type { ContentStore } from '@kadmirror/store'
import { RECENT_REQUESTS } from './constants.ts'

/** A recent mirror request. */
export interface RecentRequest {
  /** When it ended, ms since the epoch. */
  at: number
  method: string
  path: string
  registry?: string
  status: number
  source: ResponseEvent['source']
  peer?: string
  bytes: number
  durationMs: number
}

/** A peer of the view, with the addresses of its connections. */
export interface DebugPeer {
  id: string
  addresses: string[]
}

/** The debug page's status. */
export interface DebugStatus {
  peerId: string
  addresses: string[]
  peers: DebugPeer[]
  images: Array<{ reference: string; digest: string }>
  /** When a request was last served from a peer, ms since the epoch; undefined before the first. */
  lastMirrorSuccess?: number
  recent: RecentRequest[]
}

/** Keeps the recent requests and the last success from the mirror's events. */
export class DebugState {
  private readonly recent: RecentRequest[] = []
  private lastSuccess: number | undefined
  private readonly router: Libp2pRouter
  private readonly store: ContentStore

  constructor(sources: { mirror: MirrorHandler; router: Libp2pRouter; store: ContentStore }) {
    this.router = sources.router
    this.store = sources.store
    sources.mirror.events.on('response', (e) => {
      if (e.kind === 'health') return
      if (e.source === 'peer' && e.status < 400) this.lastSuccess = Date.now()
      this.recent.unshift({
        at: Date.now(),
        ...{ method: e.method, path: e.path, status: e.status, source: e.source, bytes: e.bytes },
        durationMs: Math.round(e.durationMs * 10) / 10,
        ...(e.registry === undefined ? {} : { registry: e.registry }),
        ...(e.peer === undefined ? {} : { peer: e.peer })
      })
      if (this.recent.length > RECENT_REQUESTS) this.recent.pop()
    })
  }

  private peers(): DebugPeer[] {
    const byPeer = new Map<string, string[]>()
    for (const connection of this.router.libp2p.getConnections()) {
      const id = connection.remotePeer.toString()
      byPeer.set(id, [...(byPeer.get(id) ?? []), connection.remoteAddr.toString()])
    }
    return this.router.peers().map((id) => ({ id, addresses: byPeer.get(id) ?? [] }))
  }

  private async images(): Promise<DebugStatus['images']> {
    const images: DebugStatus['images'] = []
    for await (const key of this.store.keys())
      if (key.key !== key.digest) images.push({ reference: key.key, digest: key.digest })
    return images.sort((a, b) => a.reference.localeCompare(b.reference))
  }

  async status(): Promise<DebugStatus> {
    return {
      peerId: this.router.peerId,
      addresses: this.router.addresses(),
      peers: this.peers(),
      images: await this.images(),
      ...(this.lastSuccess === undefined ? {} : { lastMirrorSuccess: this.lastSuccess }),
      recent: [...this.recent]
    }
  }
}
