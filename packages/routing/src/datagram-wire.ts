/**
 * The datagrams of gossip mode's lookups over UDP: a GET_PROVIDERS request and its answer, each in one datagram.
 *
 * ```
 * 0  'k' 'm'        magic
 * 2  1              version
 * 3  1 | 2          kind: request, answer
 * 4  8 bytes        request id (random; the answer repeats it)
 * 12 uint16 BE      length of the message
 * 14 message        a DHT message (the lookup protocol's protobuf)
 *    zeros          a request is padded to DATAGRAM_REQUEST_BYTES: no answer is larger than its request
 *    16 bytes       with a private-network key: HMAC-SHA256 of all before it under a key derived from it, cut to 16
 * ```
 *
 * Decoding checks everything: a datagram that is not this, or whose tag does not verify, is an {@link InvalidFrameError}.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { DATAGRAM_REQUEST_BYTES } from './constants.ts'
import { InvalidFrameError } from './errors.ts'
import { decodeMessage, encodeMessage, type KadMessage } from './kad-message.ts'

/** What a datagram is. */
export const DatagramKind = { request: 1, answer: 2 } as const
/** One of {@link DatagramKind}. */
export type DatagramKind = (typeof DatagramKind)[keyof typeof DatagramKind]

/** A decoded datagram. */
export interface Datagram {
  kind: DatagramKind
  /** The request id, 8 bytes as 16 hex digits. */
  id: string
  message: KadMessage
  /** The datagram's length in bytes (an answer may be at most its request's). */
  bytes: number
}

const MAGIC = [0x6b, 0x6d]
const VERSION = 1
const HEADER_BYTES = 14
const TAG_BYTES = 16

/**
 * The key datagrams are authenticated with in a private network (derived from its swarm key, so the swarm key
 * itself never keys anything else), or undefined in an open one.
 */
export function datagramKey(privateNetworkKey: Uint8Array | undefined): Uint8Array | undefined {
  if (privateNetworkKey === undefined) return undefined
  return createHash('sha256').update('kadmirror datagram lookups v1').update(privateNetworkKey).digest()
}

/**
 * Encodes a datagram: a request padded to {@link DATAGRAM_REQUEST_BYTES}, an answer as long as its message.
 * @throws {InvalidFrameError} when the message does not fit (a request's in its padded size).
 */
export function encodeDatagram(
  kind: DatagramKind,
  id: string,
  message: KadMessage,
  key?: Uint8Array
): Uint8Array {
  const body = encodeMessage(message)
  const tag = key === undefined ? 0 : TAG_BYTES
  const length = kind === DatagramKind.request ? DATAGRAM_REQUEST_BYTES : HEADER_BYTES + body.length + tag
  if (HEADER_BYTES + body.length + tag > length || body.length > 0xffff)
    throw new InvalidFrameError(`a ${body.length}-byte message does not fit a datagram`)
  const out = new Uint8Array(length)
  out.set(MAGIC, 0)
  out[2] = VERSION
  out[3] = kind
  out.set(Buffer.from(id, 'hex'), 4)
  new DataView(out.buffer).setUint16(12, body.length)
  out.set(body, HEADER_BYTES)
  if (key !== undefined) out.set(tagOf(key, out.subarray(0, length - TAG_BYTES)), length - TAG_BYTES)
  return out
}

/** Decodes a datagram. @throws {InvalidFrameError} when it is not one, or its tag does not verify. */
export function decodeDatagram(bytes: Uint8Array, key?: Uint8Array): Datagram {
  const tag = key === undefined ? 0 : TAG_BYTES
  if (bytes.length < HEADER_BYTES + tag || bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1])
    throw new InvalidFrameError('not a lookup datagram')
  if (bytes[2] !== VERSION) throw new InvalidFrameError(`lookup datagram version ${bytes[2]}`)
  const kind = bytes[3]
  if (kind !== DatagramKind.request && kind !== DatagramKind.answer)
    throw new InvalidFrameError(`lookup datagram kind ${kind}`)
  if (key !== undefined) {
    const expected = tagOf(key, bytes.subarray(0, bytes.length - TAG_BYTES))
    if (!timingSafeEqual(expected, bytes.subarray(bytes.length - TAG_BYTES)))
      throw new InvalidFrameError('lookup datagram tag does not verify')
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(12)
  if (HEADER_BYTES + length + tag > bytes.length) throw new InvalidFrameError('lookup datagram cut short')
  const id = Buffer.from(bytes.subarray(4, 12)).toString('hex')
  let message: KadMessage
  try {
    message = decodeMessage(bytes.subarray(HEADER_BYTES, HEADER_BYTES + length))
  } catch (err) {
    throw new InvalidFrameError(`lookup datagram message: ${(err as Error).message}`)
  }
  return { kind, id, message, bytes: bytes.length }
}

/**
 * The longest answer to a request of `requestBytes`: its providers cut until it fits (answers never amplify),
 * encoded. Undefined when even the answer without providers does not fit.
 */
export function encodeAnswerWithin(
  id: string,
  answer: KadMessage,
  requestBytes: number,
  key?: Uint8Array
): Uint8Array | undefined {
  const providers = [...answer.providers]
  for (;;) {
    const bytes = encodeDatagram(DatagramKind.answer, id, { ...answer, providers }, key)
    if (bytes.length <= requestBytes) return bytes
    if (providers.length === 0) return undefined
    providers.pop()
  }
}

function tagOf(key: Uint8Array, bytes: Uint8Array): Uint8Array {
  return createHmac('sha256', key).update(bytes).digest().subarray(0, TAG_BYTES)
}
