/**
 * A simulated cluster: N {@link SimNode}s on one virtual clock and network, built converged (every node knows
 * every member, records placed), then driven through phases by the bench: lookups at a rate, churn (joins,
 * clean leaves, crashes), a partition that heals. It keeps what the bench reports: lookups per phase, how long
 * news of a crash or a join takes to reach the cluster, bytes each node sends.
 */
import {
  kadId,
  MapMemberStore,
  type MemberRecord,
  reachable,
  VirtualClock
} from '@kadmirror/routing/membership'
import { type NetworkModel, SimNetwork, seededRandom } from './network.ts'
import { foldAgreed, OverlayMemberStore } from './overlay-store.ts'
import { type SimLookup, SimNode, type SimSettings } from './sim-node.ts'

/** A lookup as the bench records it. */
export interface LookupSample extends SimLookup {
  phase: string
  /** A key some live node provides (else a key nobody has). */
  hit: boolean
  /** A live provider of the key was found. */
  ok: boolean
  /** Providers found that had stopped. */
  stale: number
}

/** How long news of one member took to reach (nearly) every live node. */
export interface Spread {
  kind: 'join' | 'leave' | 'crash'
  /** From the event until 99 % of the live nodes applied it, in ms (undefined: not within the run). */
  ms: number | undefined
  /** For a join: from the first dial until the node had the membership and could look up, in ms. */
  usableMs?: number
}

const encoder = new TextEncoder()
const PING_INTERVAL_MS = 60_000
const PING_TIMEOUT_MS = 20_000
const FOLD_INTERVAL_MS = 5000

interface Watch {
  kind: Spread['kind']
  started: number
  nodes: number
  spread: Spread
}

/** The simulated cluster. */
export class SimCluster {
  readonly clock = new VirtualClock()
  readonly random: () => number
  readonly net: SimNetwork<SimNode>
  readonly base = new MapMemberStore()
  readonly lookups: LookupSample[] = []
  readonly spreads: Spread[] = []
  private readonly watches = new Map<string, Watch>()
  private needsDrain = false
  private nextIndex = 0
  private live: SimNode[] = []
  private liveDirty = true

  private readonly settings: SimSettings
  private readonly keysPerNode: number

  constructor(settings: SimSettings, model: NetworkModel, keysPerNode: number, seed: number) {
    this.settings = settings
    this.keysPerNode = keysPerNode
    this.random = seededRandom(seed)
    this.net = new SimNetwork(this.clock, model, this.random)
  }

  private readonly hooks = {
    news: (node: SimNode, record: MemberRecord) => this.onNews(node, record),
    settled: () => {
      this.needsDrain = true
    }
  }

  /** Live nodes (cached until one starts or stops). */
  liveNodes(): SimNode[] {
    if (this.liveDirty) {
      this.live = [...this.net.nodes.values()].filter((node) => node.alive)
      this.liveDirty = false
    }
    return this.live
  }

  private newRecord(): MemberRecord {
    const id = `node-${this.nextIndex++}`
    return { id, kad: kadId(encoder.encode(id)), incarnation: 1, state: 'alive', addresses: [] }
  }

  private keysOf(id: string): Array<{ target: Uint8Array; value: string }> {
    return Array.from({ length: this.keysPerNode }, (_, j) => {
      const value = `${id}/k${j}`
      return { target: kadId(encoder.encode(value)), value }
    })
  }

  /** Builds `size` nodes that already agree on membership, connected as planned, their records placed. */
  build(size: number): void {
    const records = Array.from({ length: size }, () => this.newRecord())
    for (const record of records) this.base.set(record)
    for (const record of records) {
      const node = new SimNode(this.net, record, new OverlayMemberStore(this.base), this.settings, this.hooks)
      this.net.nodes.set(record.id, node)
    }
    for (const node of this.net.nodes.values()) {
      for (const peer of node.plan.planned()) {
        if (node.connections.has(peer)) continue
        node.onOpen(peer)
        this.net.nodes.get(peer)?.onOpen(node.id)
      }
    }
    for (const node of this.net.nodes.values()) {
      for (const { holder, values } of node.placement.add(this.keysOf(node.id)))
        this.net.nodes.get(holder.id)?.store(node.id, values)
      node.reconcile()
      node.start()
    }
    this.liveDirty = true
    this.fold()
  }

  /** Moves what every live node agrees on into the shared base, every few seconds. */
  private fold(): void {
    foldAgreed(
      this.base,
      this.liveNodes().map((node) => node.table.store as OverlayMemberStore)
    )
    this.clock.setTimeout(() => this.fold(), FOLD_INTERVAL_MS)
  }

  /** Runs the clock for `ms`, draining promise callbacks after events that settled one. */
  async run(ms: number): Promise<void> {
    const end = this.clock.now() + ms
    for (;;) {
      const next = this.clock.peek()
      if (next === undefined || next > end) break
      this.clock.next()
      if (this.needsDrain) {
        this.needsDrain = false
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    this.clock.advance(end - this.clock.now())
  }

  /** Starts `perSecond` lookups a second (a share `hitShare` of keys some node provides) until `ms` from now. */
  lookupLoad(phase: string, perSecond: number, hitShare: number, ms: number): void {
    const end = this.clock.now() + ms
    const tick = (): void => {
      if (this.clock.now() >= end) return
      this.startLookup(phase, this.random() < hitShare)
      this.clock.setTimeout(tick, -Math.log(1 - this.random()) * (1000 / perSecond))
    }
    tick()
  }

  private startLookup(phase: string, hit: boolean): void {
    const live = this.liveNodes()
    const asker = live[Math.floor(this.random() * live.length)] as SimNode
    const provider = live[Math.floor(this.random() * live.length)] as SimNode
    if (hit && (provider === asker || !this.net.linked(asker.id, provider.id))) return
    const key = hit
      ? `${provider.id}/k${Math.floor(this.random() * this.keysPerNode)}`
      : `miss-${this.lookups.length}-${this.random()}`
    const target = kadId(encoder.encode(key))
    void asker.lookup(key, target).then((result) => {
      const stale = result.found.filter((id) => this.net.nodes.get(id)?.alive !== true).length
      this.lookups.push({ ...result, phase, hit, ok: hit && result.found.includes(provider.id), stale })
    })
  }

  /** Churn: members leave (half cleanly, half crashing) and as many join, `perMinute` of each a minute. */
  churn(perMinute: number, ms: number): void {
    const end = this.clock.now() + ms
    const meanGapMs = 60_000 / perMinute
    const leave = (): void => {
      if (this.clock.now() >= end) return
      this.stopOne(this.random() < 0.5 ? 'leave' : 'crash')
      this.clock.setTimeout(leave, -Math.log(1 - this.random()) * meanGapMs)
    }
    const join = (): void => {
      if (this.clock.now() >= end) return
      this.join()
      this.clock.setTimeout(join, -Math.log(1 - this.random()) * meanGapMs)
    }
    this.clock.setTimeout(leave, -Math.log(1 - this.random()) * meanGapMs)
    this.clock.setTimeout(join, -Math.log(1 - this.random()) * meanGapMs)
  }

  private stopOne(kind: 'leave' | 'crash'): void {
    const live = this.liveNodes()
    const node = live[Math.floor(this.random() * live.length)] as SimNode
    this.watch(node.id, kind)
    if (kind === 'leave') node.leave()
    else node.stop('reset')
    // A clean leave stops a gossip round later.
    this.liveDirty = true
    this.clock.setTimeout(() => {
      this.liveDirty = true
    }, this.settings.gossipIntervalMs + 1)
  }

  /** A node joins: dials a live member (its bootstrap), receives its table, announces itself, advertises. */
  join(): void {
    const started = this.clock.now()
    const live = this.liveNodes()
    const sponsor = live[Math.floor(this.random() * live.length)] as SimNode
    const record = { ...this.newRecord(), incarnation: Math.max(1, Math.round(started)) }
    const { model } = this.net
    const snapshotBytes = (sponsor.table.reachableCount + 1) * this.settings.recordBytes
    const delay =
      (model.dialRoundTrips + 1) * 2 * this.net.oneWayMs() +
      model.dialCpuMs +
      snapshotBytes / model.bytesPerMs
    this.clock.setTimeout(() => {
      if (!sponsor.alive) return
      const store = new OverlayMemberStore(this.base, sponsor.table.store as OverlayMemberStore)
      const node = new SimNode(this.net, record, store, this.settings, this.hooks)
      this.net.nodes.set(record.id, node)
      this.liveDirty = true
      const watch = this.watch(record.id, 'join')
      watch.spread.usableMs = this.clock.now() - started
      watch.started = started
      sponsor.onOpen(node.id)
      node.onOpen(sponsor.id)
      node.announce()
      node.reconcile()
      node.start()
      node.advertise(this.keysOf(record.id))
    }, delay)
  }

  private watch(id: string, kind: Spread['kind']): Watch {
    const spread: Spread = { kind, ms: undefined }
    const watch: Watch = { kind, started: this.clock.now(), nodes: 0, spread }
    this.watches.set(id, watch)
    this.spreads.push(spread)
    return watch
  }

  private onNews(node: SimNode, record: MemberRecord): void {
    const watch = this.watches.get(record.id)
    if (watch === undefined || node.id === record.id) return
    const counts =
      watch.kind === 'join' ? reachable(record) : record.state === 'dead' || record.state === 'left'
    if (!counts) return
    watch.nodes++
    if (watch.nodes >= 0.99 * (this.liveNodes().length - 1)) {
      watch.spread.ms = this.clock.now() - watch.started
      this.watches.delete(record.id)
    }
  }

  /**
   * Cuts `island` random live nodes off the rest for `ms` (a rack behind a failed switch): messages across are
   * lost, dials across time out, and pings across time out within a ping interval plus the ping timeout. Then
   * heals.
   */
  partition(ms: number, island: number): void {
    const nodes = [...this.liveNodes()]
    for (let i = 0; i < Math.min(island, nodes.length); i++) {
      const j = i + Math.floor(this.random() * (nodes.length - i))
      ;[nodes[i], nodes[j]] = [nodes[j] as SimNode, nodes[i] as SimNode]
      this.net.groups.set((nodes[i] as SimNode).id, 1)
    }
    for (const node of nodes) {
      for (const peer of node.connections) {
        if (this.net.linked(node.id, peer)) continue
        const at = this.random() * PING_INTERVAL_MS + PING_TIMEOUT_MS
        this.clock.setTimeout(() => {
          if (!this.net.linked(node.id, peer)) node.onClose(peer, 'timeout')
        }, at)
      }
    }
    this.clock.setTimeout(() => this.net.groups.clear(), ms)
  }

  /** Sizes of what the simulator keeps, to find where its memory goes. */
  debugCounts(): Record<string, number> {
    const nodes = [...this.net.nodes.values()]
    const sum = (f: (n: SimNode) => number): number => nodes.reduce((a, n) => a + f(n), 0)
    return {
      nodes: nodes.length,
      overlay: sum((n) => (n.table.store as OverlayMemberStore).own.size),
      rumors: sum((n) => n.rumors.size),
      held: sum((n) => n.held.size),
      timers: this.clock.pending,
      lookups: this.lookups.length,
      base: this.base.reachableCount
    }
  }

  /** Whether every live node's view has exactly the live nodes reachable (counts compared). */
  converged(): boolean {
    const live = this.liveNodes()
    return live.every((node) => node.table.reachableCount === live.length - 1)
  }
}
