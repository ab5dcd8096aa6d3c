/**
 * The frames of {@link MEMBERS_PROTOCOL}: JSON `{ "kind": "push" | "sync", "records": [[id, incarnation, state,
 * [addresses]], …] }`. A `push` carries rumors and has no answer; a `sync` carries (a frame of) the sender's whole
 * table and is answered with the receiver's. Everything a peer sends is checked: a record with an invalid peer id,
 * incarnation, state or address is dropped, addresses are cut to {@link MAX_MEMBER_ADDRESSES}, loopback
 * addresses dropped unless allowed, and the Kademlia id is computed here, never taken from the wire.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_MEMBER_ADDRESSES } from './constants.ts'
import { isLoopback } from './libp2p-node.ts'
import type { Liveness, MemberRecord } from './member-table.ts'

/** What a frame is for. */
export type MembersFrameKind = 'push' | 'sync'

/** A decoded frame. */
export interface MembersFrame {
  kind: MembersFrameKind
  records: MemberRecord[]
  /** Records dropped as invalid. */
  invalid: number
}

const STATES = new Set<Liveness>(['alive', 'suspect', 'dead', 'left'])
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Encodes a frame. */
export function encodeMembers(kind: MembersFrameKind, records: readonly MemberRecord[]): Uint8Array {
  const wire = records.map((r) => [r.id, r.incarnation, r.state, r.addresses])
  return encoder.encode(JSON.stringify({ kind, records: wire }))
}

/** What decoding needs: the Kademlia id of a peer id, and whether loopback addresses are allowed. */
export interface DecodeContext {
  /** The Kademlia id of a peer id string (the caller caches it), or undefined when it is not a peer id. */
  kadOf(id: string): Uint8Array | undefined
  allowLoopback: boolean
}

/**
 * Decodes a frame.
 * @throws {Error} when it is not JSON of that shape at all (the stream is then dropped); single bad records are
 *   only counted.
 */
export function decodeMembers(bytes: Uint8Array, context: DecodeContext): MembersFrame {
  const parsed: unknown = JSON.parse(decoder.decode(bytes))
  const { kind, records } = (parsed ?? {}) as { kind?: unknown; records?: unknown }
  if ((kind !== 'push' && kind !== 'sync') || !Array.isArray(records)) throw new Error('not a members frame')
  const out: MemberRecord[] = []
  for (const wire of records) {
    const record = decodeRecord(wire, context)
    if (record !== undefined) out.push(record)
  }
  return { kind, records: out, invalid: records.length - out.length }
}

function decodeRecord(wire: unknown, context: DecodeContext): MemberRecord | undefined {
  if (!Array.isArray(wire) || wire.length !== 4) return undefined
  const [id, incarnation, state, addresses] = wire as [unknown, unknown, unknown, unknown]
  if (typeof id !== 'string' || id.length > 128) return undefined
  const kad = context.kadOf(id)
  if (kad === undefined) return undefined
  if (typeof incarnation !== 'number' || !Number.isSafeInteger(incarnation) || incarnation < 0)
    return undefined
  if (typeof state !== 'string' || !STATES.has(state as Liveness) || !Array.isArray(addresses))
    return undefined
  return {
    id,
    kad,
    incarnation,
    state: state as Liveness,
    addresses: validAddresses(addresses, context.allowLoopback)
  }
}

/** The valid addresses of a record (at most {@link MAX_MEMBER_ADDRESSES}; any with `/p2p/` dropped). */
function validAddresses(addresses: unknown[], allowLoopback: boolean): string[] {
  const out: string[] = []
  for (const address of addresses) {
    if (out.length === MAX_MEMBER_ADDRESSES) break
    if (typeof address !== 'string' || address.length > 256) continue
    try {
      const parsed = multiaddr(address)
      // Addresses go without the peer id (the record's id is appended when dialling).
      if (parsed.getComponents().some((c) => c.name === 'p2p')) continue
      if (!allowLoopback && isLoopback(parsed)) continue
      out.push(address)
    } catch {
      // not a multiaddr: dropped
    }
  }
  return out
}
