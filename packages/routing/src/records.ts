/**
 * Provider records: this node's advertised keys sent to the peers that hold them (kadmirror peers many per stream
 * on {@link PROVIDE_PROTOCOL}, Spegel peers as stock ADD_PROVIDER messages), withdrawn on
 * {@link WITHDRAW_PROTOCOL}, handed to peers that join among the closest; and the handlers that store and drop
 * the records other nodes send. Emits `provide`, `withdraw` and `failure`.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { lpStream, pbStream } from '@libp2p/utils'
import type { Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import { toString as bytesToString } from 'uint8arrays/to-string'
import {
  ADVERTISE_BATCH_SIZE,
  ADVERTISE_PEER_CONCURRENCY,
  PROVIDE_PROTOCOL,
  RECORD_FRAME_MAX_BYTES,
  RECORDS_TIMEOUT_REQUESTS,
  WITHDRAW_PROTOCOL
} from './constants.ts'
import type { RouterEvents } from './events.ts'
import { type KadMessage, KadMessageCodec, MessageType } from './kad-message.ts'
import { kadId, keyToCid } from './keys.ts'
import type { ProviderDatastore } from './provider-datastore.ts'
import { groupByHolder, type PlacedKey } from './strategy.ts'
import type { ClusterView, Member } from './view.ts'

/** The answer a node sends once it has handled every frame of a provide or withdraw stream. */
const RECORDS_ACK = new TextEncoder().encode('ok')

/** A key's multihash, its base32 form (the provider index's key) and its Kademlia id. */
export interface KeyInfo extends PlacedKey<Uint8Array> {
  mhKey: string
}

/** Computes a key's {@link KeyInfo}. */
export function keyInfoOf(key: string): KeyInfo {
  const mh = keyToCid(key).multihash.bytes
  return { value: mh, mhKey: bytesToString(mh, 'base32'), target: kadId(mh) }
}

/** Options of {@link Records}. */
export interface RecordsInit {
  libp2p: Libp2p
  protocol: string
  view: ClusterView
  replication: number
  requestTimeoutMs: number
  /** This node as a wire peer (id and addresses), for stock ADD_PROVIDER messages. */
  selfPeer(): { id: Uint8Array; multiaddrs: Uint8Array[] }
  shutdown: AbortSignal
  events: RouterEvents
  log: Logger
}

/** Runs `task` over `items` with at most `concurrency` at once. */
export async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<void>
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++] as T)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

/** The keys this node advertises, and the sending of their records. */
export class Records {
  /** Keys this node advertises. */
  readonly advertised = new Set<string>()
  /** Key infos of advertised keys, which are sent again at every reprovide. */
  private readonly infos = new Map<string, KeyInfo>()

  private readonly init: RecordsInit

  constructor(init: RecordsInit) {
    this.init = init
  }

  /** The info of a key; kept while the key is advertised. */
  keyInfo(key: string): KeyInfo {
    let info = this.infos.get(key)
    if (info === undefined) {
      info = keyInfoOf(key)
      if (this.advertised.has(key)) this.infos.set(key, info)
    }
    return info
  }

  /** Adds `keys` to the advertised ones and sends their records to their closest peers. */
  async advertise(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.advertised.add(key)
    await this.announce(keys, 'advertise')
  }

  /** Hands the records of every advertised key to the peers of `joined` that are now among its closest. */
  async handoff(joined: ReadonlySet<string>): Promise<void> {
    if (this.advertised.size === 0) return
    await this.announce([...this.advertised], 'handoff', joined)
  }

  /** Stops advertising `keys` and tells their holders to drop the records (kadmirror peers; Spegel's expire). */
  async withdraw(keys: readonly string[]): Promise<void> {
    const started = Date.now()
    const infos = keys.map((key) => {
      const info = this.keyInfo(key)
      this.advertised.delete(key)
      this.infos.delete(key)
      return info
    })
    const groups = this.holders(infos)
    const failures = await this.sendGroups(groups, 'withdraw', (holder, mhs) =>
      this.sendRecords(WITHDRAW_PROTOCOL, holder.id, mhs)
    )
    this.init.events.emit('withdraw', {
      keys: keys.length,
      peers: groups.length,
      failures,
      durationMs: Date.now() - started
    })
  }

  /** Withdraws every advertised key (a node leaving cleanly), giving up after `timeoutMs`. Never rejects. */
  async withdrawAll(timeoutMs: number): Promise<void> {
    const keys = [...this.advertised]
    if (keys.length === 0) return
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs)
    })
    await Promise.race([this.withdraw(keys), timeout]).catch((err: unknown) =>
      this.init.log.debug({ err }, 'could not withdraw the records on close')
    )
    clearTimeout(timer)
  }

  private holders(infos: Iterable<KeyInfo>, onlyTo?: ReadonlySet<string>) {
    const { view, replication } = this.init
    return groupByHolder(
      infos,
      (target, count) => view.closest(target, count),
      replication,
      (m) => m.key,
      onlyTo
    )
  }

  private async announce(
    keys: readonly string[],
    reason: 'advertise' | 'handoff',
    onlyTo?: ReadonlySet<string>
  ): Promise<void> {
    if (this.init.view.size === 0) return
    const started = Date.now()
    const groups = this.holders(
      keys.map((key) => this.keyInfo(key)),
      onlyTo
    )
    const failures = await this.sendGroups(groups, 'provide', (holder, mhs) =>
      holder.batches
        ? this.sendRecords(PROVIDE_PROTOCOL, holder.id, mhs)
        : this.sendProviderRecords(holder.id, mhs)
    )
    if (failures > 0)
      this.init.log.warn({ failures, peers: groups.length }, 'some peers did not take provider records')
    this.init.events.emit('provide', {
      keys: keys.length,
      peers: groups.length,
      failures,
      durationMs: Date.now() - started,
      reason
    })
  }

  /** Sends each group to its holder, a few at once; returns how many holders failed. */
  private async sendGroups(
    groups: ReadonlyArray<{ holder: Member; values: Uint8Array[] }>,
    operation: 'provide' | 'withdraw',
    send: (holder: Member, mhs: readonly Uint8Array[]) => Promise<void>
  ): Promise<number> {
    let failures = 0
    await forEachConcurrently(groups, ADVERTISE_PEER_CONCURRENCY, async ({ holder, values }) => {
      try {
        await send(holder, values)
      } catch (err) {
        failures++
        this.init.log.debug({ err, peer: holder.key }, `peer did not take the ${operation} records`)
        this.init.events.emit('failure', { operation, peer: holder.key, error: err })
      }
    })
    return failures
  }

  /** A signal that ends a record stream of `records` records: the router's shutdown, or its time running out. */
  private streamSignal(records: number): AbortSignal {
    const timeoutMs = this.init.requestTimeoutMs * RECORDS_TIMEOUT_REQUESTS + records
    return AbortSignal.any([this.init.shutdown, AbortSignal.timeout(timeoutMs)])
  }

  /** Sends key multihashes to a peer on a record protocol and waits for its acknowledgement. */
  private async sendRecords(recordProtocol: string, peer: PeerId, mhs: readonly Uint8Array[]): Promise<void> {
    const signal = this.streamSignal(mhs.length)
    this.init.view.use(peer.toString())
    const stream = await this.init.libp2p.dialProtocol(this.init.view.dialTarget(peer), recordProtocol, {
      signal
    })
    try {
      const frames = lpStream(stream, { maxDataLength: RECORD_FRAME_MAX_BYTES })
      for (let i = 0; i < mhs.length; i += ADVERTISE_BATCH_SIZE) {
        await frames.writeV(mhs.slice(i, i + ADVERTISE_BATCH_SIZE), { signal })
      }
      await stream.close({ signal })
      await frames.read({ signal })
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  /** Sends stock ADD_PROVIDER messages for `mhs` to one peer (a Spegel node), all on one stream, and waits until it has stored them. */
  private async sendProviderRecords(peer: PeerId, mhs: readonly Uint8Array[]): Promise<void> {
    const self = this.init.selfPeer()
    const signal = this.streamSignal(mhs.length)
    const stream = await this.init.libp2p.dialProtocol(peer, this.init.protocol, { signal })
    try {
      const messages = pbStream(stream).pb(KadMessageCodec)
      for (let i = 0; i < mhs.length; i += ADVERTISE_BATCH_SIZE) {
        const batch = mhs
          .slice(i, i + ADVERTISE_BATCH_SIZE)
          .map((key): KadMessage => ({ type: MessageType.ADD_PROVIDER, key, closer: [], providers: [self] }))
        await messages.writeV(batch, { signal })
      }
      // ADD_PROVIDER has no answer; a node handles the messages of a stream in order, so the answer to a
      // trailing PING says every record before it is stored.
      await messages.write({ type: MessageType.PING, closer: [], providers: [] }, { signal })
      await messages.read({ signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }
}

/** Options of {@link handleRecordStreams}. */
export interface RecordHandlersInit {
  libp2p: Libp2p
  datastore: ProviderDatastore
  requestTimeoutMs: number
  log: Logger
}

/** Handles a stream of key multihash frames from a peer, applying `apply` to each, then acknowledges. */
function recordStreamHandler(
  name: string,
  init: RecordHandlersInit,
  apply: (mhKey: string, sender: string) => void
): (stream: Stream, connection: { remotePeer: PeerId }) => Promise<void> {
  return async (stream, connection) => {
    const sender = connection.remotePeer.toString()
    const frames = lpStream(stream, { maxDataLength: RECORD_FRAME_MAX_BYTES })
    try {
      while (true) {
        const frame = await frames
          .read({ signal: AbortSignal.timeout(init.requestTimeoutMs * RECORDS_TIMEOUT_REQUESTS) })
          .catch((err: unknown) => {
            if (stream.remoteWriteStatus !== 'writable') return undefined
            throw err
          })
        if (frame === undefined) break
        apply(bytesToString(frame.subarray(), 'base32'), sender)
      }
      await frames.write(RECORDS_ACK)
      await stream.close()
    } catch (err) {
      // A peer that closed its stream before the acknowledgement (it is shutting down): its records were applied.
      if ((err as Error | undefined)?.name === 'StreamStateError')
        init.log.debug({ err, peer: sender }, `${name} stream closed before its acknowledgement`)
      else init.log.warn({ err, peer: sender }, `invalid ${name} stream`)
      stream.abort(err as Error)
    }
  }
}

/** Stores the records kadmirror peers send on {@link PROVIDE_PROTOCOL} and drops those withdrawn on {@link WITHDRAW_PROTOCOL}. */
export async function handleRecordStreams(init: RecordHandlersInit): Promise<void> {
  const { libp2p, datastore } = init
  await libp2p.handle(
    WITHDRAW_PROTOCOL,
    recordStreamHandler('withdraw', init, (mhKey, sender) => datastore.deleteProvider(mhKey, sender))
  )
  await libp2p.handle(
    PROVIDE_PROTOCOL,
    recordStreamHandler('provide', init, (mhKey, sender) => datastore.putProvider(mhKey, sender, Date.now()))
  )
}
