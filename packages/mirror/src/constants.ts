/**
 * Every tunable of the mirror handler, with its unit in the name and the reason for its default.
 * Defaults match Spegel's where Spegel has the same knob, so operators can switch.
 */

/** Registry port of the mirror (Spegel's `--registry-addr=:5000`). */
export const DEFAULT_REGISTRY_PORT = 5000
/** With no peer found within this time (and no fetch in flight), the answer is 404, in ms (Spegel: 20 ms). */
export const RESOLVE_TIMEOUT_MS = 20
/** Peers tried after the first one fails, per request (Spegel: 3). */
export const RESOLVE_RETRIES = 3
/** Connecting to a peer's registry gives up after this, in ms; a dead peer must not hold a pull. */
export const CONNECT_TIMEOUT_MS = 500
/** Longest time a manifest or a HEAD request may spend on peers, in ms (Spegel: 3 s). */
export const MANIFEST_TIMEOUT_MS = 3000
/** Longest wait for a peer's response headers to a blob GET, in ms. */
export const RESPONSE_TIMEOUT_MS = 3000
/** A peer that sends no blob bytes for this long is left for the next peer, resuming at the byte reached, in ms. */
export const STALL_TIMEOUT_MS = 3000
/** Shortest wait before a second peer is asked while the first has not answered, in ms (Spegel: 50 ms). */
export const MIN_HEDGE_DELAY_MS = 50
/** Percentile of recent peer response times after which a second peer is asked. */
export const HEDGE_PERCENTILE = 0.9
/** Peer response times kept for the hedge delay. */
export const HEDGE_WINDOW = 128
/** A peer that sent bytes not matching their digest is not asked again for this long, in ms. */
export const MISMATCH_AVOID_MS = 10 * 60 * 1000
/** A peer that failed (refused, timed out, answered an error) is not asked again for this long, in ms. */
export const FAILURE_AVOID_MS = 5000
/** Largest manifest accepted from a peer, in bytes: the stores' limit (distribution's 4 MiB). */
export { MAX_MANIFEST_BYTES } from '@kadmirror/store'
/** Idle keep-alive connections to a peer are closed after this, in ms. */
export const KEEP_ALIVE_TIMEOUT_MS = 30_000
/** Header forwarded to peers so they answer from their own store only (Spegel's loop prevention). */
export const MIRRORED_HEADER = 'x-spegel-mirrored'
/** The registry that tag requests without `?ns=` refer to: Docker's `registry-mirrors` only mirror Docker Hub. */
export const DEFAULT_TAG_REGISTRY = 'docker.io'
