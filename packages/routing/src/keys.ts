/**
 * Spegel's key encoding: a key string's UTF-8 bytes hashed with sha2-256 into a CIDv1 with the raw codec.
 * Provider records are keyed by the CID's multihash, and Kademlia distance is measured between the sha256 of
 * that multihash and the sha256 of a peer id's multihash bytes (as go- and js-libp2p-kad-dht do).
 */
import { createHash } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'

/** Multicodec code of `raw`. */
const RAW_CODE = 0x55
/** Multihash code of sha2-256. */
const SHA2_256_CODE = 0x12

/** The CIDv1 (raw codec, sha2-256) of a key string, as Spegel computes it. */
export function keyToCid(key: string): CID {
  return CID.createV1(
    RAW_CODE,
    Digest.create(SHA2_256_CODE, createHash('sha256').update(key, 'utf8').digest())
  )
}

/** The Kademlia id of bytes: their sha256. */
export function kadId(bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}

/** The Kademlia id of a key's provider records (sha256 of the CID's multihash bytes). */
export function keyKadId(cid: CID): Uint8Array {
  return kadId(cid.multihash.bytes)
}

/** The Kademlia id of a peer (sha256 of its peer id's multihash bytes). */
export function peerKadId(peer: PeerId): Uint8Array {
  return kadId(peer.toMultihash().bytes)
}

/** Compares the XOR distances of `a` and `b` to `target`: negative when `a` is closer. */
export function compareDistance(a: Uint8Array, b: Uint8Array, target: Uint8Array): number {
  for (let i = 0; i < target.length; i++) {
    const da = (a[i] as number) ^ (target[i] as number)
    const db = (b[i] as number) ^ (target[i] as number)
    if (da !== db) return da - db
  }
  return 0
}
