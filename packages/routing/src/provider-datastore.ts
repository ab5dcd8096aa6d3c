/**
 * The libp2p datastore of a router: an in-memory datastore whose provider records
 * (`<prefix>/provider/<multihash base32>/<peer id>`, value = varint ms timestamp) are indexed by key, so a
 * GET_PROVIDERS answer reads one key's records instead of scanning every record, and expired records are
 * never served.
 */
import { BaseDatastore } from 'datastore-core/base'
import { Key, type KeyQuery, type Pair, type Query } from 'interface-datastore'
import { NotFoundError } from 'interface-store'
import * as varint from 'uint8-varint'

/** Options of {@link ProviderDatastore}. */
export interface ProviderDatastoreInit {
  /** The DHT's datastore prefix; default `/dht`. */
  dhtPrefix?: string
  /** How long a provider record is served after it was written, in ms. */
  validityMs: number
  /** The clock, in ms; default `Date.now`. */
  now?: () => number
}

interface ProviderRecord {
  value: Uint8Array
  /** When the record was written (from its value), ms since the epoch. */
  time: number
}

/** An in-memory libp2p datastore with indexed, expiring provider records. */
export class ProviderDatastore extends BaseDatastore {
  private readonly data = new Map<string, Uint8Array>()
  /** multihash (base32) → peer id → record. */
  private readonly providers = new Map<string, Map<string, ProviderRecord>>()
  private readonly providerPrefix: string
  private readonly validityMs: number
  private readonly now: () => number

  constructor(init: ProviderDatastoreInit) {
    super()
    this.providerPrefix = `${init.dhtPrefix ?? '/dht'}/provider/`
    this.validityMs = init.validityMs
    this.now = init.now ?? Date.now
  }

  /** Splits a provider key into its multihash and peer parts, or undefined for other keys. */
  private parse(key: string): { mh: string; peer: string | undefined } | undefined {
    if (!key.startsWith(this.providerPrefix)) return undefined
    const rest = key.slice(this.providerPrefix.length)
    const slash = rest.indexOf('/')
    if (slash < 0) return { mh: rest, peer: undefined }
    return { mh: rest.slice(0, slash), peer: rest.slice(slash + 1) }
  }

  private expired(record: ProviderRecord): boolean {
    return this.now() - record.time > this.validityMs
  }

  override put(key: Key, value: Uint8Array): Key {
    const parts = this.parse(key.toString())
    if (parts?.peer === undefined || parts.peer === '') {
      this.data.set(key.toString(), value)
      return key
    }
    let time: number
    try {
      time = varint.decode(value)
    } catch {
      time = this.now()
    }
    this.putProvider(parts.mh, parts.peer, time)
    return key
  }

  override get(key: Key): Uint8Array {
    const parts = this.parse(key.toString())
    if (parts?.peer !== undefined) {
      const record = this.providers.get(parts.mh)?.get(parts.peer)
      if (record === undefined || this.expired(record)) throw new NotFoundError()
      return record.value
    }
    const value = this.data.get(key.toString())
    if (value === undefined) throw new NotFoundError()
    return value
  }

  override has(key: Key): boolean {
    try {
      this.get(key)
      return true
    } catch {
      return false
    }
  }

  override delete(key: Key): void {
    const parts = this.parse(key.toString())
    if (parts?.peer === undefined) {
      this.data.delete(key.toString())
      return
    }
    const peers = this.providers.get(parts.mh)
    peers?.delete(parts.peer)
    if (peers?.size === 0) this.providers.delete(parts.mh)
  }

  /** Stores (or renews) the record of `peer` for the key with multihash `mh` (base32), written at `time` (ms). */
  putProvider(mh: string, peer: string, time: number): void {
    let peers = this.providers.get(mh)
    if (peers === undefined) {
      peers = new Map()
      this.providers.set(mh, peers)
    }
    peers.set(peer, { value: varint.encode(time), time })
  }

  /** Deletes the record of `peer` for the key with multihash `mh` (base32). */
  deleteProvider(mh: string, peer: string): boolean {
    const peers = this.providers.get(mh)
    const deleted = peers?.delete(peer) ?? false
    if (peers?.size === 0) this.providers.delete(mh)
    return deleted
  }

  /** Peer ids (strings) holding valid records for the key with multihash `mh` (base32). */
  providersOf(mh: string): string[] {
    const peers = this.providers.get(mh)
    if (peers === undefined) return []
    const out: string[] = []
    for (const [peer, record] of peers) if (!this.expired(record)) out.push(peer)
    return out
  }

  /** Number of valid provider records held. */
  recordCount(): number {
    let count = 0
    for (const peers of this.providers.values())
      for (const record of peers.values()) if (!this.expired(record)) count++
    return count
  }

  /** Deletes every expired provider record; returns how many. */
  sweep(): number {
    let deleted = 0
    for (const [mh, peers] of this.providers) {
      for (const [peer, record] of peers) {
        if (this.expired(record)) {
          peers.delete(peer)
          deleted++
        }
      }
      if (peers.size === 0) this.providers.delete(mh)
    }
    return deleted
  }

  override *_all(q: Query): Generator<Pair> {
    const prefix = q.prefix === undefined ? undefined : this.parse(q.prefix)
    if (prefix !== undefined && prefix.mh !== '' && (prefix.peer === undefined || prefix.peer === '')) {
      const base = `${this.providerPrefix}${prefix.mh}`
      for (const [peer, record] of this.providers.get(prefix.mh) ?? []) {
        if (!this.expired(record)) yield { key: new Key(`${base}/${peer}`), value: record.value }
      }
      return
    }
    for (const [key, value] of this.data) yield { key: new Key(key), value }
    for (const [mh, peers] of this.providers) {
      for (const [peer, record] of peers) {
        if (!this.expired(record))
          yield { key: new Key(`${this.providerPrefix}${mh}/${peer}`), value: record.value }
      }
    }
  }

  override *_allKeys(q: KeyQuery): Generator<Key> {
    for (const pair of this._all(q.prefix === undefined ? {} : { prefix: q.prefix })) yield pair.key
  }
}
