/**
 * Gossip mode's lookups over UDP ({@link DatagramLookups}): a member this node has no connection to is asked for a
 * key's providers in one datagram and answers in one, on the router port's number over UDP — no dial (a noise
 * handshake and identify at both ends, ~16 ms of CPU measured here) on a lookup's path. Requests are padded so
 * that no answer is larger than its request; in a private network both are authenticated with a key derived from
 * the swarm key; the allow list applies to requests as to connections. Only GET_PROVIDERS is answered.
 */
import { randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import type { AllowList } from './access.ts'
import { DATAGRAM_ANSWERS_PER_SECOND, DATAGRAM_REQUEST_BYTES, DATAGRAM_RETRY_MS } from './constants.ts'
import { DatagramKind, decodeDatagram, encodeAnswerWithin, encodeDatagram } from './datagram-wire.ts'
import { RequestTimeoutError, RouterClosedError } from './errors.ts'
import { type KadMessage, MessageType } from './kad-message.ts'
import type { LookupAnswerer } from './lookup-server.ts'

/** Where a member answers lookup datagrams. */
export interface DatagramAddress {
  family: 4 | 6
  host: string
  port: number
}

/** The datagram address a multiaddr names (`/ip4/<host>/udp/<port>`, `/ip6/…`), or undefined when it names none. */
export function datagramAddressOf(address: Multiaddr): DatagramAddress | undefined {
  const [ip, udp, ...rest] = address.getComponents()
  if (ip === undefined || udp?.name !== 'udp' || rest.length > 0) return undefined
  if (ip.name !== 'ip4' && ip.name !== 'ip6') return undefined
  const port = Number(udp.value)
  if (!Number.isInteger(port) || port < 1 || port > 65535 || ip.value === undefined) return undefined
  return { family: ip.name === 'ip4' ? 4 : 6, host: ip.value, port }
}

/** Options of {@link DatagramLookups}. */
export interface DatagramLookupsInit {
  /** Authenticates every datagram (a private network), see `datagramKey`. */
  key?: Uint8Array
  /** Requests from addresses outside it are dropped. */
  allowed?: AllowList
  /** Whether requests are answered now (the router's libp2p node is running: a node stopped answers nothing). */
  answering?: () => boolean
  log: Logger
}

interface Pending {
  resolve(message: KadMessage): void
  reject(error: Error): void
}

/** A UDP socket per address family that serves lookup datagrams and sends this node's. */
export class DatagramLookups {
  private readonly sockets = new Map<4 | 6, Socket>()
  private readonly pending = new Map<string, Pending>()
  private window = { second: 0, answered: 0 }
  /** Answers requests; none are answered before {@link serve}. */
  private answer: LookupAnswerer | undefined
  private readonly init: DatagramLookupsInit

  constructor(init: DatagramLookupsInit) {
    this.init = init
  }

  /** Answers requests with `answer` from now on (the lookup protocol's answers). */
  serve(answer: LookupAnswerer): void {
    this.answer = answer
  }

  /**
   * Binds a socket for each family of `listen` (libp2p listen multiaddrs, `/ip4/0.0.0.0/tcp/5001`) on its host,
   * at `port(family)` (the TCP port, so that one number opens both) or, when that is taken, any free port. A
   * family whose bind fails (no IPv6 on the host) is left out, logged.
   */
  async bind(listen: readonly string[], port: (family: 4 | 6) => number): Promise<void> {
    for (const address of listen) {
      const ip = multiaddr(address).getComponents()[0]
      if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || ip.value === undefined) continue
      const family = ip.name === 'ip4' ? 4 : 6
      if (this.sockets.has(family)) continue
      const host = ip.value
      const socket = await this.bindOne(family, host, port(family))
        .catch(async (err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
          this.init.log.warn({ port: port(family) }, 'UDP port taken; lookup datagrams on another port')
          return this.bindOne(family, host, 0)
        })
        .catch((err: unknown) => {
          this.init.log.warn({ err, host }, 'no lookup datagrams on this address; members dial it instead')
          return undefined
        })
      if (socket !== undefined) this.sockets.set(family, socket)
    }
  }

  private async bindOne(family: 4 | 6, host: string, port: number): Promise<Socket> {
    const socket = createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6 })
    socket.on('message', (bytes, from) => this.receive(socket, bytes, from))
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject)
        socket.bind(port, host, () => {
          socket.off('error', reject)
          resolve()
        })
      })
    } catch (err) {
      socket.close()
      throw err
    }
    socket.on('error', (err) => this.init.log.warn({ err }, 'lookup datagram socket failed'))
    return socket
  }

  /** This node's datagram addresses: for each of its addresses `/ipX/<host>/tcp/…`, `/ipX/<host>/udp/<bound port>`. */
  addressesFor(addresses: readonly string[]): string[] {
    const out = new Set<string>()
    for (const address of addresses) {
      const ip = multiaddr(address).getComponents()[0]
      if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || ip.value === undefined) continue
      const socket = this.sockets.get(ip.name === 'ip4' ? 4 : 6)
      if (socket !== undefined) out.add(`/${ip.name}/${ip.value}/udp/${socket.address().port}`)
    }
    return [...out]
  }

  /** Whether a datagram can go to `address` (a socket of its family is bound). */
  reaches(address: DatagramAddress): boolean {
    return this.sockets.has(address.family)
  }

  /**
   * Sends `message` to `to` and resolves its answer; sent again after {@link DATAGRAM_RETRY_MS} when none came.
   * @throws {RequestTimeoutError} when no answer came within `timeoutMs`; {@link RouterClosedError} once closed.
   */
  request(to: DatagramAddress, message: KadMessage, timeoutMs: number): Promise<KadMessage> {
    const socket = this.sockets.get(to.family)
    if (socket === undefined) return Promise.reject(new RouterClosedError('no datagram socket'))
    const id = randomBytes(8).toString('hex')
    const bytes = encodeDatagram(DatagramKind.request, id, message, this.init.key)
    return new Promise<KadMessage>((resolve, reject) => {
      const end = (): void => {
        clearTimeout(retry)
        clearTimeout(deadline)
        this.pending.delete(id)
      }
      const fail = (err: Error): void => {
        if (!this.pending.has(id)) return
        end()
        reject(err)
      }
      const send = (): void => {
        try {
          socket.send(bytes, to.port, to.host, (err) => err !== null && fail(err))
        } catch (err) {
          fail(err as Error)
        }
      }
      const retry = setTimeout(send, DATAGRAM_RETRY_MS)
      // Failed only after the loop has read what arrived (a starved process takes an answer already received).
      const deadline = setTimeout(() => {
        setImmediate(() =>
          fail(new RequestTimeoutError(`no lookup datagram answer from ${to.host}:${to.port}`))
        )
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (answer) => {
          end()
          resolve(answer)
        },
        reject: fail
      })
      send()
    })
  }

  /** Closes the sockets; requests waiting fail with {@link RouterClosedError}. */
  close(): void {
    for (const socket of this.sockets.values()) socket.close()
    this.sockets.clear()
    for (const pending of [...this.pending.values()]) pending.reject(new RouterClosedError())
  }

  private receive(socket: Socket, bytes: Buffer, from: RemoteInfo): void {
    if (this.init.allowed !== undefined && !this.init.allowed.allows(from.address)) return
    let datagram: ReturnType<typeof decodeDatagram>
    try {
      datagram = decodeDatagram(bytes, this.init.key)
    } catch (err) {
      this.init.log.debug({ err, from: from.address }, 'dropped a lookup datagram')
      return
    }
    if (datagram.kind === DatagramKind.answer) {
      this.pending.get(datagram.id)?.resolve(datagram.message)
      return
    }
    const { message } = datagram
    if (this.answer === undefined || message.type !== MessageType.GET_PROVIDERS) return
    if (this.init.answering?.() === false) return
    if (datagram.bytes < DATAGRAM_REQUEST_BYTES || !this.withinBudget()) return
    const answer = encodeAnswerWithin(datagram.id, this.answer(message), bytes.length, this.init.key)
    if (answer !== undefined) socket.send(answer, from.port, from.address, () => {})
  }

  /** Counts an answer against {@link DATAGRAM_ANSWERS_PER_SECOND}; false when this second's are spent. */
  private withinBudget(): boolean {
    const second = Math.floor(Date.now() / 1000)
    if (this.window.second !== second) this.window = { second, answered: 0 }
    return ++this.window.answered <= DATAGRAM_ANSWERS_PER_SECOND
  }
}
