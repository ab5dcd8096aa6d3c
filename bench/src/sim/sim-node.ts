/**
 * One simulated node: the router's membership table, rumor queue, connection plan, placement and lookup
 * strategy (the code from @kadmirror/routing/membership, unchanged) over the simulated network. Failure
 * detection is the design's: a connection reset or a failed dial makes a member suspect; pings across a
 * partition time out (the driver closes those connections with `timeout`).
 */
import {
  antiEntropyIntervalMs,
  ConnectionPlan,
  compareDistance,
  connectedHoldersFirst,
  type Handoff,
  type MemberRecord,
  type MemberStore,
  MemberTable,
  type PlacedRecord,
  Placement,
  pickRandom,
  RumorQueue,
  reachable,
  retransmitLimit,
  runLookupStrategy,
  tombstoneRetryDelayMs
} from '@kadmirror/routing/membership'
import type { NetworkNode, SimNetwork } from './network.ts'

/** Tunables of the simulated design. */
export interface SimSettings {
  replication: number
  alpha: number
  /** Width of a lookup's frontier (K). */
  frontier: number
  hedgeMs: number
  near: number
  random: number
  maxConnections: number
  gossipIntervalMs: number
  gossipFanout: number
  rumorsPerMessage: number
  retransmitMultiplier: number
  suspectTimeoutMs: number
  tombstoneMs: number
  /** Bytes of one member record on the wire. */
  recordBytes: number
  /** How often a node tries one dead member again (a healed partition), in ms. */
  reconnectIntervalMs: number
  /** Connections used this recently are not closed for being over the bound, in ms. */
  trimGraceMs: number
  /** How long a member whose dial failed, or that closed our connection, is not dialled by the plan, in ms. */
  dialBackoffMs: number
  /** Lookups ask members without a connection in a datagram (the router's `datagramLookups`), not after a dial. */
  datagrams: boolean
  /** Size of a lookup request datagram, in bytes (padded: answers are never larger). */
  datagramRequestBytes: number
  /** Time after which a lookup datagram not answered is sent once more, in ms. */
  datagramRetryMs: number
}

/** A lookup's result. */
export interface SimLookup {
  found: string[]
  firstMs: number | undefined
  doneMs: number
  /** Longest chain of peers followed (1: one round). */
  hops: number
  asked: number
  /** Asks that needed a new connection. */
  dialled: number
  /** Asks sent in a datagram. */
  datagrams: number
}

interface Answer {
  providers: string[]
  closer: MemberRecord[]
}

/** What a node reports to the driver. */
export interface ClusterHooks {
  /** A node applied news of a member. */
  news(node: SimNode, record: MemberRecord): void
  /** A promise was settled in a timer callback (the driver drains microtasks). */
  settled(): void
}

/** A node of the simulated cluster. */
export class SimNode implements NetworkNode {
  alive = true
  readonly connections = new Set<string>()
  readonly table: MemberTable
  readonly rumors = new RumorQueue()
  readonly plan: ConnectionPlan
  readonly placement: Placement<string>
  /** Records this node holds: key → providers, and provider → keys. */
  readonly held = new Map<string, Set<string>>()
  private readonly heldBy = new Map<string, Set<string>>()
  private readonly dialing = new Map<string, Array<(ok: boolean) => void>>()
  private readonly backoffUntil = new Map<string, number>()
  private planned = new Set<string>()
  /** The Kademlia id of the farthest of the near members planned (undefined: fewer than planned). */
  private nearEdge: Uint8Array | undefined
  private gossiping = false
  private reconcileQueued = false
  private trimQueued = false
  trims = 0

  readonly net: SimNetwork<SimNode>
  readonly settings: SimSettings
  private readonly hooks: ClusterHooks

  constructor(
    net: SimNetwork<SimNode>,
    self: MemberRecord,
    store: MemberStore,
    settings: SimSettings,
    hooks: ClusterHooks
  ) {
    this.net = net
    this.settings = settings
    this.hooks = hooks
    this.table = new MemberTable({
      self,
      store,
      clock: net.clock,
      suspectTimeoutMs: settings.suspectTimeoutMs,
      tombstoneMs: settings.tombstoneMs,
      onNews: (record, previous) => this.onNews(record, previous)
    })
    this.plan = new ConnectionPlan({
      table: this.table,
      near: settings.near,
      random: settings.random,
      max: settings.maxConnections,
      graceMs: settings.trimGraceMs,
      randomSource: net.random
    })
    this.placement = new Placement({
      replication: settings.replication,
      closest: (target, count) => this.table.closest(target, count)
    })
  }

  get id(): string {
    return this.table.self.id
  }

  /** The members this node plans to keep connected (as of its last reconcile). */
  plannedPeers(): ReadonlySet<string> {
    return this.planned
  }

  /** Starts the periodic work: gossip when there are rumors, whole-table syncs, and trying dead members again. */
  start(): void {
    this.startGossip()
    // As the router: a whole-table sync with a random connected member, at the interval its member count gives.
    const sync = (): void => {
      if (!this.alive) return
      const peer = pickRandom([...this.connections], 1, this.net.random)[0]
      const node = peer === undefined ? undefined : this.net.nodes.get(peer)
      if (node !== undefined) this.pushPull(node)
      this.net.clock.setTimeout(sync, antiEntropyIntervalMs(this.table.reachableCount + 1))
    }
    this.net.clock.setTimeout(sync, this.net.random() * antiEntropyIntervalMs(this.table.reachableCount + 1))
    // As the router: each node retries every interval × members / 100 (about ten tries a second cluster-wide).
    const retry = (): void => {
      if (!this.alive) return
      this.retryTombstone()
      const members = this.table.reachableCount + 1
      const delay = tombstoneRetryDelayMs(members, this.settings.reconnectIntervalMs, this.net.random)
      this.net.clock.setTimeout(retry, delay)
    }
    this.net.clock.setTimeout(retry, this.net.random() * this.settings.reconnectIntervalMs)
  }

  /** Announces this node (a join): its own record spreads as a rumor. */
  announce(): void {
    this.rumors.push(this.table.self)
    this.startGossip()
  }

  private onNews(record: MemberRecord, previous: MemberRecord | undefined): void {
    this.hooks.news(this, record)
    this.rumors.push(record)
    this.startGossip()
    if (record.id === this.id) return
    // A member said to be suspect or dead while this node holds a connection to it hears so at once, and refutes.
    if (record.state !== 'alive' && record.state !== 'left' && this.connections.has(record.id))
      this.net.send(this.id, record.id, 40 + this.settings.recordBytes, () =>
        this.net.nodes.get(record.id)?.receive([record])
      )
    if (!reachable(record)) {
      this.sendRecords(this.placement.left(record.id))
      // A member that left withdrew its records; a dead one's are kept (unserved) in case it comes back.
      if (record.state === 'left') this.dropRecordsOf(record.id)
    } else if (previous === undefined || !reachable(previous)) {
      this.sendRecords(this.placement.joined(record))
    }
    if (this.affectsPlan(record)) this.queueReconcile()
  }

  /** Whether news of `record` may change the plan: a planned member going, or a member nearer than the edge. */
  private affectsPlan(record: MemberRecord): boolean {
    if (this.planned.has(record.id)) return !reachable(record)
    if (!reachable(record)) return false
    return this.nearEdge === undefined || compareDistance(record.kad, this.nearEdge, this.table.self.kad) < 0
  }

  private startGossip(): void {
    if (this.gossiping || !this.alive) return
    this.gossiping = true
    this.net.clock.setTimeout(() => this.gossip(), this.net.random() * this.settings.gossipIntervalMs)
  }

  /** One gossip round: rumors to a few random connected peers, each taking its own batch. */
  private gossip(): void {
    const { gossipFanout, rumorsPerMessage, retransmitMultiplier, recordBytes } = this.settings
    if (!this.alive || this.rumors.size === 0 || this.connections.size === 0) {
      this.gossiping = false
      return
    }
    const limit = retransmitLimit(this.table.reachableCount + 1, retransmitMultiplier)
    for (const peer of pickRandom([...this.connections], gossipFanout, this.net.random)) {
      const batch = this.rumors.take(rumorsPerMessage, limit)
      if (batch.length === 0) break
      this.net.send(this.id, peer, 40 + batch.length * recordBytes, () =>
        this.net.nodes.get(peer)?.receive(batch)
      )
    }
    this.net.clock.setTimeout(() => this.gossip(), this.settings.gossipIntervalMs)
  }

  /** Applies the records a peer sent. */
  receive(records: readonly MemberRecord[]): void {
    for (const record of records) this.table.apply(record)
  }

  private queueReconcile(): void {
    if (this.reconcileQueued || !this.alive) return
    this.reconcileQueued = true
    this.net.clock.setTimeout(() => {
      this.reconcileQueued = false
      this.reconcile()
    }, 50)
  }

  /** Dials planned members not yet connected, and closes connections over the bound. */
  reconcile(): void {
    if (!this.alive) return
    this.planned = this.plan.planned()
    const near = this.table.closest(this.table.self.kad, this.settings.near)
    this.nearEdge = near.length === this.settings.near ? near.at(-1)?.kad : undefined
    const now = this.net.clock.now()
    for (const id of this.planned) {
      if (this.connections.has(id) || this.dialing.has(id) || (this.backoffUntil.get(id) ?? 0) > now) continue
      this.connect(id, () => undefined)
    }
    this.trim()
  }

  /**
   * Closes connections over the bound (unplanned ones, least recently used first); while some are left over (in
   * their grace time), tries again a grace time later (the router checks every second).
   */
  private trim(): void {
    for (const id of this.plan.excess(this.connections, this.planned, this.net.clock.now())) {
      this.trims++
      this.net.close(this, id, 'closed')
    }
    if (this.connections.size <= this.settings.maxConnections || this.trimQueued) return
    this.trimQueued = true
    this.net.clock.setTimeout(() => {
      this.trimQueued = false
      if (this.alive) this.trim()
    }, this.settings.trimGraceMs)
  }

  onOpen(peer: string): void {
    this.connections.add(peer)
    this.plan.used(peer, this.net.clock.now())
    if (this.connections.size > this.settings.maxConnections) this.trim()
  }

  onClose(peer: string, reason: 'reset' | 'timeout' | 'closed'): void {
    if (!this.connections.delete(peer)) return
    this.plan.closed(peer)
    if (reason === 'closed') this.backoffUntil.set(peer, this.net.clock.now() + this.settings.dialBackoffMs)
    else this.table.suspect(peer)
    if (this.planned.has(peer)) this.queueReconcile()
  }

  /** Opens (or reuses) a connection to `peer`; a failed dial makes it suspect. */
  connect(peer: string, done: (ok: boolean) => void): void {
    if (this.connections.has(peer)) {
      this.plan.used(peer, this.net.clock.now())
      done(true)
      return
    }
    const waiting = this.dialing.get(peer)
    if (waiting !== undefined) {
      waiting.push(done)
      return
    }
    this.dialing.set(peer, [done])
    this.net.dial(this, peer, (ok) => {
      const callbacks = this.dialing.get(peer) ?? []
      this.dialing.delete(peer)
      if (!ok && this.alive) {
        this.backoffUntil.set(peer, this.net.clock.now() + this.settings.dialBackoffMs)
        this.table.suspect(peer)
      }
      for (const callback of callbacks) callback(ok)
    })
  }

  /** Sends records to their holders (dialling them on demand). */
  sendRecords(handoffs: ReadonlyArray<Handoff<string>>): void {
    for (const { holder, values } of handoffs) {
      this.connect(holder.id, (ok) => {
        if (!ok || !this.alive) return
        this.net.send(this.id, holder.id, 40 + values.length * 40, () =>
          this.net.nodes.get(holder.id)?.store(this.id, values)
        )
      })
    }
  }

  /** Holds `provider`'s records of `keys`. */
  store(provider: string, keys: readonly string[]): void {
    const mine = this.heldBy.get(provider) ?? new Set()
    this.heldBy.set(provider, mine)
    for (const key of keys) {
      mine.add(key)
      const providers = this.held.get(key) ?? new Set()
      this.held.set(key, providers)
      providers.add(provider)
    }
  }

  /** Drops the records of a provider that left (it withdrew them). */
  private dropRecordsOf(provider: string): void {
    for (const key of this.heldBy.get(provider) ?? []) {
      const providers = this.held.get(key)
      providers?.delete(provider)
      if (providers?.size === 0) this.held.delete(key)
    }
    this.heldBy.delete(provider)
  }

  /** Advertises keys: records placed at their holders. */
  advertise(records: ReadonlyArray<PlacedRecord<string>>): void {
    this.sendRecords(this.placement.add(records))
  }

  /** Leaves cleanly: says so to every connected peer (as the router does), then stops. */
  leave(): void {
    const left = this.table.leave()
    for (const peer of this.connections)
      this.net.send(this.id, peer, 40 + this.settings.recordBytes, () =>
        this.net.nodes.get(peer)?.receive([left])
      )
    this.net.clock.setTimeout(() => this.stop('closed'), this.settings.gossipIntervalMs)
  }

  /** Stops: every connection closes (`reset` when the process died). */
  stop(reason: 'reset' | 'closed'): void {
    if (!this.alive) return
    for (const peer of this.connections) this.net.close(this, peer, reason)
    this.alive = false
    this.table.stop()
  }

  /** Tries one dead member again; when it answers, both exchange their whole tables. */
  private retryTombstone(): void {
    const dead = this.table.randomTombstone(this.net.random)
    if (dead === undefined || dead.id === this.id || this.dialing.has(dead.id)) return
    this.connect(dead.id, (ok) => {
      const peer = this.net.nodes.get(dead.id)
      if (ok && peer !== undefined) this.pushPull(peer)
    })
  }

  /** Sends this node's whole table to `peer` and applies its table in return. */
  pushPull(peer: SimNode): void {
    const mine = [...this.table.store.records()]
    this.net.send(this.id, peer.id, mine.length * this.settings.recordBytes, () => {
      peer.receive(mine)
      const theirs = [...peer.table.store.records()]
      this.net.send(peer.id, this.id, theirs.length * this.settings.recordBytes, () => this.receive(theirs))
    })
  }

  /** Answers a lookup: the providers held that this node believes reachable, and the closest members it knows. */
  answer(key: string, target: Uint8Array): Answer {
    const providers = [...(this.held.get(key) ?? [])].filter((id) => {
      const record = this.table.get(id)
      return record !== undefined && reachable(record)
    })
    return { providers, closer: this.table.closest(target, this.settings.alpha) }
  }

  /** Looks `key` up with the router's lookup strategy. */
  async lookup(key: string, target: Uint8Array): Promise<SimLookup> {
    const started = this.net.clock.now()
    const found = new Set<string>()
    let firstMs: number | undefined
    let dialled = 0
    let datagrams = 0
    const closest = this.table.closest(target, this.settings.frontier).map((r) => ({ key: r.id, kad: r.kad }))
    // As the router in gossip mode: a member is asked without a dial when connected or asked in a datagram.
    const reachable = (peer: string): boolean => this.settings.datagrams || this.connections.has(peer)
    // As the router in gossip mode: connected holders are asked first.
    const candidates = connectedHoldersFirst(closest, this.settings.replication, (p) => reachable(p.key))
    const outcome = await runLookupStrategy<{ key: string; kad: Uint8Array }, Answer>({
      target,
      candidates,
      alpha: this.settings.alpha,
      holders: this.settings.replication,
      hedgeMs: this.settings.hedgeMs,
      timers: this.net.clock,
      // As the router in gossip mode: a peer not connected is dialled first (the hedge counts answers only).
      connect: (peer) => {
        if (reachable(peer.key)) return undefined
        dialled++
        return new Promise<void>((resolve, reject) =>
          this.connect(peer.key, (ok) => {
            this.hooks.settled()
            if (ok) resolve()
            else reject(new Error('dial failed'))
          })
        )
      },
      connected: (peer) => reachable(peer.key),
      ask: (peer) => {
        if (this.connections.has(peer.key) || !this.settings.datagrams) return this.ask(peer.key, key, target)
        datagrams++
        return this.askByDatagram(peer.key, key, target)
      },
      read: async (_peer, answer) => {
        for (const provider of answer.providers) {
          if (provider === this.id || found.has(provider)) continue
          found.add(provider)
          firstMs ??= this.net.clock.now() - started
        }
        // Peers already in the lookup are skipped by the strategy.
        return answer.closer.filter((r) => r.id !== this.id).map((r) => ({ key: r.id, kad: r.kad }))
      }
    })
    return {
      found: [...found],
      firstMs,
      doneMs: this.net.clock.now() - started,
      hops: outcome.rounds,
      asked: outcome.asked,
      dialled,
      datagrams
    }
  }

  /** One lookup request to `holder` (connected by the strategy's connect step, or reconnected here). */
  private ask(holder: string, key: string, target: Uint8Array): Promise<Answer> {
    return this.request(holder, key, target, 120, (send, fail) =>
      this.connect(holder, (ok) => (ok ? send() : fail(new Error('dial failed'))))
    )
  }

  /** One lookup request to `holder` in a datagram, sent again once when not answered within the retry time. */
  private askByDatagram(holder: string, key: string, target: Uint8Array): Promise<Answer> {
    const { datagramRequestBytes, datagramRetryMs } = this.settings
    return this.request(holder, key, target, datagramRequestBytes, (send) => send(), datagramRetryMs)
  }

  /**
   * A lookup request of `requestBytes` to `holder` and its answer: `carry` sends it (`send`), or fails it; resolves the
   * answer, or rejects after the model's timeout. `resendMs`: sent once more when not answered by then.
   */
  private request(
    holder: string,
    key: string,
    target: Uint8Array,
    requestBytes: number,
    carry: (send: () => void, fail: (error: Error) => void) => void,
    resendMs?: number
  ): Promise<Answer> {
    const { clock } = this.net
    return new Promise((resolve, reject) => {
      let settled = false
      const finish = (settle: () => void): void => {
        if (settled) return
        settled = true
        clock.clearTimeout(timer)
        if (resend !== undefined) clock.clearTimeout(resend)
        this.hooks.settled()
        settle()
      }
      const send = (): void =>
        this.net.send(this.id, holder, requestBytes, () => {
          const answer = (this.net.nodes.get(holder) as SimNode).answer(key, target)
          this.net.send(holder, this.id, 60 + 40 * answer.providers.length, () =>
            finish(() => resolve(answer))
          )
        })
      const timer = clock.setTimeout(
        () => finish(() => reject(new Error('timeout'))),
        this.net.model.timeoutMs
      )
      const resend = resendMs === undefined ? undefined : clock.setTimeout(send, resendMs)
      carry(send, (error) => finish(() => reject(error)))
    })
  }
}
