/**
 * Claims on keys, decided by one node per key ({@link CLAIM_PROTOCOL}): a claim goes to the key's arbiter — the
 * kadmirror member closest to the key, or this node when it is closer — which holds the first claimer's claim for
 * a while and tells later claimers who holds it. One round trip, no settle time: the election of the flash crowd
 * (many nodes missing the same blob at once) in the time of a request. Nodes that agree on the view agree on the
 * arbiter; when the closest fails to answer the next closest is asked (every node does the same).
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import { equals } from 'uint8arrays/equals'
import { toString as bytesToString } from 'uint8arrays/to-string'
import type { AddressBook } from './address-book.ts'
import { type ClaimHolder, type ClaimState, ClaimTable } from './claim-table.ts'
import {
  CLAIM_ARBITERS_TRIED,
  CLAIM_MAX_INBOUND_STREAMS,
  CLAIM_MAX_KEY_BYTES,
  CLAIM_PROTOCOL,
  CLAIM_TABLE_MAX_ENTRIES,
  CLAIM_WAITING_NAMED,
  K,
  LOOKUP_SESSION_IDLE_MS
} from './constants.ts'
import { NoArbiterError } from './errors.ts'
import { type KadMessage, MessageType, type WirePeer } from './kad-message.ts'
import { compareDistance, peerKadId } from './keys.ts'
import { withoutPeerId } from './libp2p-node.ts'
import { serveRequestStream } from './lookup-server.ts'
import { type KeyInfo, keyInfoOf } from './records.ts'
import type { ClaimAnswer, ClaimOptions, Provider } from './router.ts'
import { Sessions } from './sessions.ts'
import type { ClusterView, Member } from './view.ts'

/** Options of {@link Arbiter}. */
export interface ArbiterInit {
  libp2p: Libp2p
  view: ClusterView
  addressBook: AddressBook
  /** How long a claim is held, in ms. */
  holdMs: number
  /** Longest wait for one arbiter's answer, in ms. */
  requestTimeoutMs: number
  log: Logger
}

/** Claims of this node (asked of arbiters) and the claims it holds as an arbiter. */
export class Arbiter {
  private readonly init: ArbiterInit
  private readonly table: ClaimTable
  private readonly sessions: Sessions
  private readonly selfKad: Uint8Array
  private readonly selfId: string
  private readonly selfIdBytes: Uint8Array

  constructor(init: ArbiterInit) {
    this.init = init
    this.selfKad = peerKadId(init.libp2p.peerId)
    this.selfId = init.libp2p.peerId.toString()
    this.selfIdBytes = init.libp2p.peerId.toMultihash().bytes
    this.table = new ClaimTable({
      holdMs: init.holdMs,
      maxEntries: CLAIM_TABLE_MAX_ENTRIES,
      maxWaiting: CLAIM_WAITING_NAMED
    })
    const { libp2p, view } = init
    this.sessions = new Sessions(
      (peer, signal) => libp2p.dialProtocol(view.dialTarget(peer), CLAIM_PROTOCOL, { signal }),
      LOOKUP_SESSION_IDLE_MS
    )
  }

  /** Registers the handler of {@link CLAIM_PROTOCOL}. */
  async start(): Promise<void> {
    await this.init.libp2p.handle(
      CLAIM_PROTOCOL,
      (stream: Stream, connection) => {
        const claimer = this.claimerOf(connection.remotePeer, connection.remoteAddr)
        serveRequestStream(stream, (message) => this.answer(claimer, message), this.init.log)
      },
      { maxInboundStreams: CLAIM_MAX_INBOUND_STREAMS }
    )
  }

  /** Closes the claim sessions. */
  stop(): void {
    this.sessions.closeAll()
  }

  /**
   * Claims `key` (or, with `peek`, asks who holds it) at its arbiter; see {@link Router.claim}.
   * @throws {NoArbiterError} when no arbiter answered; the signal's reason when it aborts.
   */
  async claim(key: string, options: ClaimOptions = {}): Promise<ClaimAnswer> {
    const info = keyInfoOf(key)
    const peek = options.peek === true
    for (const arbiter of this.arbitersOf(info.target)) {
      options.signal?.throwIfAborted()
      if (arbiter === undefined) return this.decide(info.mhKey, peek)
      try {
        const answer = await withSignal(this.ask(arbiter, info, peek), options.signal)
        return await this.read(answer, peek)
      } catch (err) {
        options.signal?.throwIfAborted()
        this.init.log.debug({ err, arbiter: arbiter.key, key }, 'claim failed at an arbiter')
      }
    }
    throw new NoArbiterError()
  }

  /**
   * The arbiters of a key, closest first: kadmirror members that speak the claim protocol, and this node
   * (undefined) where it ranks — nothing after it, as this node always answers.
   */
  private arbitersOf(target: Uint8Array): Array<Member | undefined> {
    const out: Array<Member | undefined> = []
    for (const member of this.init.view.closest(target, K)) {
      if (!member.claims) continue
      if (compareDistance(this.selfKad, member.kad, target) < 0) break
      out.push(member)
      if (out.length === CLAIM_ARBITERS_TRIED) return out
    }
    out.push(undefined)
    return out
  }

  private ask(arbiter: Member, info: KeyInfo, peek: boolean): Promise<KadMessage> {
    const type = peek ? MessageType.GET_PROVIDERS : MessageType.ADD_PROVIDER
    const message = { type, key: info.value, closer: [], providers: [] }
    return this.sessions.request(arbiter.id, message, this.init.requestTimeoutMs)
  }

  /**
   * An arbiter's answer as a {@link ClaimAnswer}: the holder first among its providers, then the nodes waiting.
   * @throws {Error} when it names no usable holder, or none after a claim (someone holds a claimed key: this node at
   *   least).
   */
  private async read(answer: KadMessage, peek: boolean): Promise<ClaimAnswer> {
    const [named, ...waitingNamed] = answer.providers
    if (named === undefined && !peek) throw new Error('the arbiter named no holder of a claimed key')
    if (named === undefined) return { won: false }
    if (equals(named.id, this.selfIdBytes)) return { won: true }
    const [holder] = await this.providersOf([named])
    if (holder === undefined) throw new Error('the arbiter named a holder without a usable id or address')
    const waiting = await this.providersOf(waitingNamed.slice(0, CLAIM_WAITING_NAMED))
    return { won: false, holder, waiting: waiting.filter((w) => w.id !== holder.id) }
  }

  /** Wire peers as providers; a malformed one, one without a usable address, and this node are left out. */
  private async providersOf(peers: readonly WirePeer[]): Promise<Provider[]> {
    const out: Provider[] = []
    for (const peer of await this.init.addressBook.learn(peers)) {
      const addresses =
        peer.addresses.length > 0 ? peer.addresses : await this.init.addressBook.addressesOf(peer.id)
      const provider = this.init.view.toProvider(peer.id.toString(), addresses)
      if (provider !== undefined) out.push(provider)
    }
    return out
  }

  /** Answers a claim-protocol request of `claimer`: the holder of the key after its claim (or peek), then the waiting. */
  private answer(claimer: ClaimHolder, message: KadMessage): KadMessage {
    const answer: KadMessage = { type: message.type, closer: [], providers: [] }
    const key = message.key
    if (key === undefined || key.length === 0 || key.length > CLAIM_MAX_KEY_BYTES) return answer
    const peek = message.type !== MessageType.ADD_PROVIDER
    const state = this.stateAfter(bytesToString(key, 'base32'), peek ? undefined : claimer)
    answer.key = key
    if (state !== undefined)
      answer.providers = [state.holder, ...state.waiting].map((h) => ({
        id: h.idBytes,
        multiaddrs: h.addresses
      }))
    return answer
  }

  /** The claim on `mhKey` after `claimer` claimed it (undefined: only asked). */
  private stateAfter(mhKey: string, claimer: ClaimHolder | undefined): ClaimState | undefined {
    return claimer === undefined ? this.table.stateOf(mhKey) : this.table.claim(mhKey, claimer)
  }

  /** This node's own decision, as the key's arbiter. */
  private decide(mhKey: string, peek: boolean): ClaimAnswer {
    const self = { id: this.selfId, idBytes: this.selfIdBytes, addresses: [] }
    const state = this.stateAfter(mhKey, peek ? undefined : self)
    if (state === undefined) return { won: false }
    if (state.holder.id === this.selfId) return { won: true }
    const [holder, ...waiting] = [state.holder, ...state.waiting].flatMap((h) => {
      const provider = this.init.view.toProvider(
        h.id,
        h.addresses.map((a) => multiaddr(a))
      )
      return provider === undefined || h.id === this.selfId ? [] : [provider]
    })
    return holder?.id === state.holder.id ? { won: false, holder, waiting } : { won: false }
  }

  /**
   * A remote claimer as a claim holder: its listen addresses as the view knows them, else the address its
   * connection came from (a registry URL takes only the host of an address).
   */
  private claimerOf(peer: PeerId, remoteAddr: Multiaddr): ClaimHolder {
    const id = peer.toString()
    const known = this.init.view.get(id)?.addresses ?? []
    const addresses = known.length > 0 ? known : [withoutPeerId(remoteAddr)]
    return { id, idBytes: peer.toMultihash().bytes, addresses: addresses.map((a) => a.bytes) }
  }
}

/**
 * `promise`, or the signal's reason once it aborts — after the event loop has read what arrived, so that an answer
 * already received when a timeout fires on a starved process is still taken.
 */
function withSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => void setImmediate(() => reject(signal.reason))
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
