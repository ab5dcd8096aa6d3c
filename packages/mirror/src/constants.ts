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
/**
 * Least throughput of a blob from a peer, in bytes per second: a peer slower than this over a whole progress window
 * (it trickles) is left for the next peer, resuming at the byte reached; with none left the response is cut and the
 * client resumes upstream. Far below any working peer on a cluster network (hundreds of MB/s), far above a trickle.
 */
export const MIN_PEER_BYTES_PER_SECOND = 256 * 1024
/**
 * Reading time over which a peer's throughput is judged, in ms. Time the mirror paused the peer because the client
 * (or the hash worker) was behind is not counted. A trickling peer costs at most about this long.
 */
export const PROGRESS_WINDOW_MS = 10_000
/** How often the throughput of a transfer is checked, in ms. */
export const PROGRESS_CHECK_INTERVAL_MS = 1000
/** Shortest wait before a second peer is asked while the first has not answered, in ms (Spegel: 50 ms). */
export const MIN_HEDGE_DELAY_MS = 50
/** Percentile of recent peer response times after which a second peer is asked. */
export const HEDGE_PERCENTILE = 0.9
/** Peer response times kept for the hedge delay. */
export const HEDGE_WINDOW = 128
/**
 * A peer that refuses the connection or answers 404 within this time, in ms, is a stale record (a stopped node, or
 * content since dropped): such a refusal is not charged to the request's attempts (`resolveRetries`).
 */
export const FAST_REFUSAL_MS = 100
/**
 * While only providers the router is not connected to (records that may be stale) are at hand, a connected one is
 * awaited this much longer, in ms, before an unconnected one is tried.
 */
export const UNCONNECTED_GRACE_MS = 10
/** Most fast refusals per request not charged to its attempts; later ones are charged. */
export const MAX_FREE_REFUSALS = 8
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
/**
 * Sent by a kadmirror mirror with every blob GET to a peer: it hashes what it receives against the digest, so the
 * serving node need not hash a whole blob it sends from its store (it still does for any other client).
 */
export const VERIFYING_HEADER = 'x-kadmirror-verifies'
/**
 * On a peer's 404 for a blob this node lost the flash-crowd election for: `<peer id> <registry URL>` of the node that
 * won and fetches it (kadmirror peers ask it at once; others ignore the header).
 */
export const FETCHER_HEADER = 'x-kadmirror-fetcher'
/**
 * Sent with a blob this node is still receiving (its containerd's download, or a relay's spool): the whole blob is
 * nowhere yet, so a kadmirror peer takes it in one stream rather than in pieces (a range that has not arrived yet is
 * refused with 429, and pieces from such peers all failed). Others ignore it.
 */
export const ARRIVING_HEADER = 'x-kadmirror-arriving'
/** The registry that tag requests without `?ns=` refer to: Docker's `registry-mirrors` only mirror Docker Hub. */
export const DEFAULT_TAG_REGISTRY = 'docker.io'
/** Largest request head the mirror accepts, in bytes; larger ones get 431. */
export const MAX_HEADER_BYTES = 16 * 1024
/**
 * Longest time a client may take to send a whole request head, from its connection or its previous request, in ms.
 * A connection that sends nothing (or trickles its head) is closed after it; a long blob transfer is not affected.
 */
export const HEADERS_TIMEOUT_MS = 10_000
/** How often the server looks for connections over the headers timeout, in ms (Node's default: 30 s). */
export const CONNECTIONS_CHECK_INTERVAL_MS = 1_000
/** An idle keep-alive connection from a client is closed after this, in ms. */
export const CLIENT_KEEP_ALIVE_TIMEOUT_MS = 30_000
/**
 * A client that reads nothing of a response for this long, in ms, has its connection closed: it would otherwise pin
 * the transfer's buffers (and a peer's connection) for ever. containerd reads as fast as its disk takes the bytes.
 */
export const CLIENT_STALL_TIMEOUT_MS = 60_000
/**
 * Copy buffers (1 MiB each) all local responses may hold at once, in bytes. A response takes up to four while the
 * pool is less than half used, one otherwise, and waits for one when the budget is spent.
 */
export const COPY_BUFFER_BUDGET_BYTES = 16 * 1024 * 1024
/**
 * Bytes all hash workers may have queued and not yet hashed, in bytes (each transfer at most a sixteenth of it). A
 * transfer over its share waits for the worker.
 */
export const HASH_IN_FLIGHT_BUDGET_BYTES = 64 * 1024 * 1024
/** Most connections the mirror holds at once; more are refused (each costs a file descriptor). */
export const MAX_CONNECTIONS = 4096
/**
 * Most connections one client address may hold at once; more are refused. containerd opens a few per pull, peers one
 * or two each; a single address holding hundreds is a client exhausting the node.
 */
export const MAX_CONNECTIONS_PER_CLIENT = 256

// --- several peers per blob ----------------------------------------------------------------------------------

/** Blobs of at least this many bytes are fetched from several peers at once, in pieces. */
export const MULTI_PEER_THRESHOLD_BYTES = 32 * 1024 * 1024
/** Bytes per piece of a blob fetched from several peers. */
export const PIECE_BYTES = 8 * 1024 * 1024
/** Most peers fetching pieces of one blob at once. */
export const MAX_PIECE_PROVIDERS = 4
/**
 * A blob forwarded from several peers as its pieces land keeps the last this many bytes of the client's range until
 * the whole digest matches.
 */
export const FORWARD_HOLD_BACK_BYTES = 256 * 1024
/** Least bytes either part of a split piece keeps (the tail a slow peer can hold at the end). */
export const MIN_SPLIT_BYTES = 1024 * 1024

// --- load spread ------------------------------------------------------------------------------------------------

/** Most blobs this node serves to peers at once; a peer asking for one more is answered 429 and asks another. */
export const MAX_PEER_UPLOADS = 32
/** How long a peer that answered 429 is passed over, in ms. */
export const BUSY_AVOID_MS = 250
/** When every provider asked was busy, the lookup is tried again after this (times 1–2, at random), in ms. */
export const BUSY_RETRY_MS = 250
/** Longest a blob request waits for a busy provider's slot (or a new provider) before answering 404, in ms. */
export const BUSY_WAIT_MS = 5000
/** Weight of the newest answer time in a peer's running average (an EWMA). */
export const PEER_RTT_WEIGHT = 0.3

// --- flash crowd ------------------------------------------------------------------------------------------------

/**
 * Longest a blob request that lost the flash-crowd election waits for the elected node's bytes after the election,
 * in ms; then it is answered 404 and the client goes upstream as without a mirror. The cost when the elected node
 * dies or cannot fetch (private content): this much (plus the election, ~2 lookups) per blob, blobs in parallel.
 */
export const FLASH_CROWD_WAIT_MS = 1500
/**
 * Most peers one blob still arriving is served to at once (see `inFlightFanOut`): a node's uplink over one
 * download's rate, so that every hop of the tree runs at the upstream's speed.
 */
export const IN_FLIGHT_FAN_OUT = 4
/** Blobs smaller than this (bytes) are not relayed while they arrive: they arrive before a record would spread. */
export const RELAY_MIN_BYTES = 1024 * 1024
/**
 * Longest the elected node holds a peer's request for a blob whose download it has not found yet (containerd is
 * starting it), in ms, before answering 404 (the peer asks again until its own wait ends).
 */
export const FETCHER_HOLD_MS = 1000
/** A held request looks in the store (a blob committed before its download was found) every this many polls. */
export const HOLD_STORE_CHECK_POLLS = 10
/**
 * Longest time between advertising a claim and reading the others' claims, in ms. The time is twice what the node's
 * own first look and claim took — about how late a claim made at the same moment by another node can land — so that
 * nodes missing a blob at once all see each other and agree on one fetcher.
 */
export const CLAIM_SETTLE_MS = 40
/**
 * Shortest such time, in ms: a few round trips of a cluster network (a look and a claim take 2–4 ms there; a miss is
 * answered after about twice that, not after {@link CLAIM_SETTLE_MS}).
 */
export const CLAIM_SETTLE_MIN_MS = 5
/** A claim is withdrawn this long after it was made, in ms (by then the elected fetch advertised its bytes or failed). */
export const CLAIM_TTL_MS = 10_000
/**
 * Longest one lookup of claimers may take, in ms. A lookup that finds nobody ends when the closest nodes answered
 * (milliseconds on a cluster network); this bound only matters on overloaded nodes, where cutting it short would
 * read as "nobody claims" and elect several fetchers.
 */
export const CLAIM_LOOKUP_TIMEOUT_MS = 1000
/** Longest one lookup of the blob may take while waiting for the elected node (it is asked directly meanwhile), in ms. */
export const FLASH_CROWD_LOOKUP_TIMEOUT_MS = 200
/** How often a waiting blob request asks the elected node for its download while it waits, in ms. */
export const FLASH_CROWD_POLL_MS = 100
/**
 * Every this many polls, a waiting request also looks the blob up (another node may hold or fetch it: the elected one
 * died, or two were elected).
 */
export const FLASH_CROWD_LOOKUP_ROUNDS = 4
/**
 * Content still being written (another fetch in flight on this node) that does not grow for this long, in ms, is
 * given up: the response to the peer is cut (its mirror resumes elsewhere or answers 404).
 */
export const GROWING_STALL_MS = 10_000
/** How often a read that reached the written end of growing content looks again, in ms. */
export const GROWING_POLL_MS = 20

// --- memory after a burst -------------------------------------------------------------------------------------

/**
 * The data path's pools (copy buffers, peer read buffers) let their free buffers go once none was taken or given
 * back for this long, in ms: a pull takes and gives buffers continuously, so a pause this long means the burst is
 * over, and a few buffers allocated again for the next one cost microseconds. Kept, they were 6 MiB of a node's
 * memory for as long as it ran (bench/compare, memory after the pulls).
 */
export const POOL_IDLE_RELEASE_MS = 2000
