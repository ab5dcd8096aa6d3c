/**
 * What a router reports, for metrics, logs and debug pages, as the mirror's `events` do: one `lookup` per lookup
 * asked for, one `provide` / `withdraw` per batch of records sent, `peer:join` / `peer:leave` as the view changes,
 * one `bootstrap` per bootstrap round and a `failure` for each thing that went wrong and was absorbed. The router
 * emits; subscribers (metrics, debug pages) need no edits inside it. Events are emitted synchronously: a slow
 * listener slows the router.
 */
import type { EventEmitter } from 'node:events'

/** Where a lookup's providers came from. */
export type LookupSource =
  /** A lookup was sent to peers (its own records included). */
  | 'network'
  /** A lookup of the same key already under way was joined. */
  | 'shared'
  /** A finished lookup of the same key was reused (within the cache time). */
  | 'cache'

/** One lookup, reported when its providers are all known. */
export interface LookupEvent {
  key: string
  source: LookupSource
  /** From the call to the end of the lookup, in ms (0 for a cached result). */
  durationMs: number
  /** Providers found (before `count` limits what the caller reads). */
  providers: number
  /** From the call to the first provider, in ms; absent when none was found. */
  firstProviderMs?: number
  /** Peers asked (network lookups; 0 otherwise). */
  peersAsked: number
  /**
   * Rounds (network lookups; 0 otherwise): 1 when only the closest members were asked (kadmirror's lookups), more
   * when answers named closer peers that were then asked (stock DHT answers, from Spegel nodes).
   */
  rounds: number
}

/** Records of this node's keys sent to the peers that hold them. */
export interface ProvideEvent {
  keys: number
  /** Peers the records went to. */
  peers: number
  /** Peers that did not take them. */
  failures: number
  durationMs: number
  /** `advertise`: asked by the caller; `handoff`: sent to peers that joined and are now among the closest. */
  reason: 'advertise' | 'handoff'
}

/** Withdrawals sent to the peers that held the records. */
export interface WithdrawEvent {
  keys: number
  peers: number
  failures: number
  durationMs: number
}

/** A DHT node entered this node's view (connected, identified, speaks the DHT protocol). */
export interface PeerJoinEvent {
  peer: string
  /** Speaks kadmirror's lookup protocol (a kadmirror node; false for a Spegel node). */
  kadmirror: boolean
}

/** A DHT node left the view (its last connection closed). */
export interface PeerLeaveEvent {
  peer: string
}

/** One bootstrap round. */
export interface BootstrapEvent {
  /** Peers the bootstrapper gave. */
  peers: number
  /** Of those, peers dialled successfully. */
  reached: number
  durationMs: number
  /** Why the round failed, when the bootstrapper itself failed. */
  error?: Error
}

/** Something that failed and was absorbed (retried, skipped, logged). */
export interface FailureEvent {
  /** What was being done. */
  operation:
    | 'dial'
    | 'redial'
    | 'lookup-request'
    | 'peer-exchange'
    | 'provide'
    | 'withdraw'
    | 'identify'
    | 'bootstrap'
  /** The peer involved, when there is one. */
  peer?: string
  error: unknown
}

/** The events of a router's `events`. */
export interface RouterEventMap {
  lookup: [LookupEvent]
  provide: [ProvideEvent]
  withdraw: [WithdrawEvent]
  'peer:join': [PeerJoinEvent]
  'peer:leave': [PeerLeaveEvent]
  bootstrap: [BootstrapEvent]
  failure: [FailureEvent]
}

/** A router's event emitter. */
export type RouterEvents = EventEmitter<RouterEventMap>
