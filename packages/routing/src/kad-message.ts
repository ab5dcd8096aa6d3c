/**
 * The Kademlia DHT wire message (libp2p's `dht.proto`, field numbers as go- and js-libp2p-kad-dht), encoded
 * with protobufjs from the schema below. Frames on a stream are varint length-prefixed.
 */
import protobuf from 'protobufjs'
import type { Uint8ArrayList } from 'uint8arraylist'

const SCHEMA = `
syntax = "proto3";
enum MessageType { PUT_VALUE = 0; GET_VALUE = 1; ADD_PROVIDER = 2; GET_PROVIDERS = 3; FIND_NODE = 4; PING = 5; }
enum ConnectionType { NOT_CONNECTED = 0; CONNECTED = 1; CAN_CONNECT = 2; CANNOT_CONNECT = 3; }
message PeerInfo { bytes id = 1; repeated bytes multiaddrs = 2; optional ConnectionType connection = 3; }
message Message {
  MessageType type = 1;
  optional int32 clusterLevel = 10;
  optional bytes key = 2;
  optional bytes record = 3;
  repeated PeerInfo closer = 8;
  repeated PeerInfo providers = 9;
}
`

/** Kademlia message types. */
export const MessageType = {
  PUT_VALUE: 0,
  GET_VALUE: 1,
  ADD_PROVIDER: 2,
  GET_PROVIDERS: 3,
  FIND_NODE: 4,
  PING: 5
} as const

/** A peer in a message: its peer id bytes (a multihash) and multiaddr bytes. */
export interface WirePeer {
  id: Uint8Array
  multiaddrs: Uint8Array[]
}

/** A Kademlia message. */
export interface KadMessage {
  type: number
  key?: Uint8Array
  closer: WirePeer[]
  providers: WirePeer[]
}

/** Largest message accepted, in bytes (as js-libp2p's stream default). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024

const MessageCodec = protobuf.parse(SCHEMA).root.lookupType('Message')

/** Encodes a message (without its length prefix). */
export function encodeMessage(message: KadMessage): Uint8Array {
  return MessageCodec.encode(MessageCodec.fromObject(message)).finish()
}

/**
 * Decodes a message. Peers and multiaddrs are returned as given; callers validate them.
 * @throws {Error} for bytes that are not a message.
 */
export function decodeMessage(bytes: Uint8Array | Uint8ArrayList): KadMessage {
  const flat = bytes instanceof Uint8Array ? bytes : bytes.subarray()
  const decoded = MessageCodec.toObject(MessageCodec.decode(flat), { enums: Number, arrays: true }) as {
    type?: number
    key?: Uint8Array
    closer?: Array<{ id?: Uint8Array; multiaddrs?: Uint8Array[] }>
    providers?: Array<{ id?: Uint8Array; multiaddrs?: Uint8Array[] }>
  }
  const peers = (list: Array<{ id?: Uint8Array; multiaddrs?: Uint8Array[] }> | undefined): WirePeer[] =>
    (list ?? []).map((p) => ({ id: p.id ?? new Uint8Array(), multiaddrs: p.multiaddrs ?? [] }))
  const message: KadMessage = {
    type: decoded.type ?? 0,
    closer: peers(decoded.closer),
    providers: peers(decoded.providers)
  }
  if (decoded.key !== undefined) message.key = decoded.key
  return message
}

/** A protobuf codec for `pbStream` from @libp2p/utils. */
export const KadMessageCodec = {
  encode: encodeMessage,
  decode: decodeMessage
}
