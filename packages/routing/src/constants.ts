/**
 * Every tunable of the routing package, with its unit in the name and the reason for its default.
 * Defaults match Spegel's where Spegel has the same knob, so operators can switch.
 */

const second = 1000
const minute = 60 * second

/** The DHT protocol Spegel speaks (go-libp2p-kad-dht with prefix `/spegel`); sharing it lets both share one DHT. */
export const DEFAULT_DHT_PROTOCOL = '/spegel/kad/1.0.0'
/** Router listen port (Spegel's `--router-addr=:5001`). */
export const DEFAULT_ROUTER_PORT = 5001
/** Registry port assumed for peers that do not announce theirs (Spegel assumes its own). */
export const DEFAULT_REGISTRY_PORT = 5000
/** How long an advertisement lasts before it is renewed (Spegel's advertise TTL). */
export const ADVERTISE_TTL_MS = 15 * minute
/** Spegel's maximum reprovide delay; provider records stay valid TTL + 2 × this. */
export const MAX_REPROVIDE_DELAY_MS = 2 * minute
/** Validity of a provider record as Spegel sets it: 15 min + 2 × 2 min. */
export const PROVIDER_VALIDITY_MS = ADVERTISE_TTL_MS + 2 * MAX_REPROVIDE_DELAY_MS
/** How long provider addresses are kept in the peer store (Spegel: 1 h). */
export const PROVIDER_ADDRESS_TTL_MS = 60 * minute
/**
 * How many of the closest peers store each provider record. Lookups ask the closest few; with every node
 * knowing nearly every other, 5 holders survive a few differing views while costing a quarter of K = 20.
 */
export const DEFAULT_REPLICATION = 5
/** Peers asked in parallel in each lookup round (Kademlia's alpha); the closest 3 hold the record when views agree. */
export const DEFAULT_LOOKUP_ALPHA = 3
/** Kademlia's K: closest peers a FIND_NODE / GET_PROVIDERS answer carries, and the width of a lookup's frontier. */
export const K = 20
/** Longest wait for one peer's answer in a lookup before it is treated as failed, in ms. */
export const REQUEST_TIMEOUT_MS = 1 * second
/** How long a lookup result with providers is reused, in ms (Spegel caches lookups for a few seconds). */
export const LOOKUP_CACHE_TTL_MS = 5 * second
/** How long "no provider" is reused, in ms: short, so content advertised a moment later is found. */
export const MISS_CACHE_TTL_MS = 500
/** Providers a lookup yields when the caller does not say (the mirror tries at most 1 + 3 retries). */
export const DEFAULT_LOOKUP_COUNT = 4
/** First retry delay of a failed bootstrap, in ms; it doubles up to {@link BOOTSTRAP_MAX_BACKOFF_MS}. */
export const BOOTSTRAP_MIN_BACKOFF_MS = 50
/** Longest delay between bootstrap retries, in ms. */
export const BOOTSTRAP_MAX_BACKOFF_MS = 10 * second
/** How often a bootstrapped node bootstraps again, to heal partitions and learn new nodes, in ms. */
export const BOOTSTRAP_INTERVAL_MS = 1 * minute
/** How often the node asks peers for the nodes they know (FIND_NODE), to keep a full view of the cluster, in ms. */
export const PEER_EXCHANGE_INTERVAL_MS = 30 * second
/** Keys sent to one peer in one stream when advertising. */
export const ADVERTISE_BATCH_SIZE = 500
/** Peers advertised to at once. */
export const ADVERTISE_PEER_CONCURRENCY = 8
/** Most connections a node keeps: a cluster mirror wants a connection to every node. */
export const DEFAULT_MAX_CONNECTIONS = 1000
/** Most entries used from an HTTP bootstrap answer (as Spegel's client). */
export const HTTP_BOOTSTRAP_MAX_ENTRIES = 3
/** Time a bootstrap server keeps a node that stopped renewing, in ms. */
export const BOOTSTRAP_SERVER_NODE_TTL_MS = 2 * minute
/** How often a node renews its registration with a bootstrap server, in ms. */
export const BOOTSTRAP_REGISTRATION_INTERVAL_MS = 30 * second
/** How long an HTTP bootstrap request may take, in ms. */
export const HTTP_BOOTSTRAP_TIMEOUT_MS = 5 * second
/** Largest HTTP bootstrap body read, in bytes. */
export const HTTP_BOOTSTRAP_MAX_BODY_BYTES = 1024 * 1024
/** How often the advertiser checks for keys due for reproviding, in ms. */
export const REPROVIDE_TICK_MS = 15 * second
/** Most keys the advertiser hands the router in one call (each call sends its records before the next). */
export const ADVERTISER_BATCH_KEYS = 2000
/** How long the advertiser gathers store events before it advertises them together, in ms (a pull adds many keys at once). */
export const ADVERTISER_EVENT_DEBOUNCE_MS = 50

// --- libp2p set-up ------------------------------------------------------------------------------------------

/** How long identify may take on a new connection, in ms (libp2p's default of 5 s is short for a busy node). */
export const IDENTIFY_TIMEOUT_MS = 15 * second
/**
 * Inbound connections per second accepted from one host when every node is on 127.0.0.1 (`allowLoopback`):
 * libp2p's default (a few per second) resets most dials of a local cluster forming.
 */
export const LOOPBACK_INBOUND_CONNECTION_THRESHOLD = 100_000
/** Inbound connections being upgraded at once when every node is on 127.0.0.1 (`allowLoopback`). */
export const LOOPBACK_MAX_INCOMING_PENDING_CONNECTIONS = 1000
/**
 * How often the stock kad-dht queries for its own id, in ms. This router keeps its own view with peer exchange,
 * so the stock self-query only cleans up: run it rarely.
 */
export const STOCK_QUERY_SELF_INTERVAL_MS = 10 * minute
/** How often the stock kad-dht sweeps expired provider records, in ms (records expire, a lookup may still see one until then). */
export const STOCK_PROVIDER_SWEEP_INTERVAL_MS = 1 * minute
/** How often kad-dht's closest peers are tagged in the peer store, in ms (kad-dht's default: 5 s; a sixth of an idle node's allocation). */
export const CLOSEST_PEER_TAG_INTERVAL_MS = 1 * minute

// --- protocols and streams ----------------------------------------------------------------------------------

/**
 * How a kadmirror node announces its registry mirror: it handles `<this>/<scheme>/<port>` (for example
 * `/kadmirror/registry/1.0.0/http/5000`), so its peers read the scheme and port from the protocols identify lists,
 * with no stream of their own (a stream per pair of nodes while a cluster forms). Spegel nodes announce nothing.
 */
export const REGISTRY_INFO_PROTOCOL = '/kadmirror/registry/1.0.0'
/** kadmirror's protocol to drop provider records at once instead of waiting for them to expire. */
export const WITHDRAW_PROTOCOL = '/kadmirror/withdraw/1.0.0'
/**
 * kadmirror's protocol to store many provider records of the sender in one stream: one frame per key
 * multihash, the sender's addresses known from its connection. Stock ADD_PROVIDER costs the receiver a peer
 * store write per record; Spegel peers, which do not speak this, get stock ADD_PROVIDER messages.
 */
export const PROVIDE_PROTOCOL = '/kadmirror/provide/1.0.0'
/**
 * kadmirror's lookup protocol: GET_PROVIDERS messages on a reused stream, answered from the provider index
 * alone — provider ids without addresses and no closer peers, since every node knows the cluster — and FIND_NODE
 * for peer exchange, answered from the view with the addresses identify gave. The stock answers cost the
 * answering node a peer-store read for each provider and for 20 closer peers; Spegel peers, which do not speak
 * this, are asked on the DHT protocol.
 */
export const LOOKUP_PROTOCOL = '/kadmirror/lookup/1.0.0'
/**
 * A lookup stream with no request for this long is closed by the answering side, in ms. Opening a stream costs a
 * round trip of protocol negotiation before the request, so lookup streams are kept for a while: a pull asks the
 * same few peers many times in a row.
 */
export const LOOKUP_STREAM_IDLE_MS = 90 * second
/**
 * kadmirror's claim protocol: a node asks a key's arbiter (the kadmirror member closest to the key) to claim the key
 * for it, first come first served; the arbiter answers who holds the claim. Messages in the DHT format on a
 * reused stream: ADD_PROVIDER claims, GET_PROVIDERS only asks; the answer names the holder among its providers
 * (none: nobody holds it). The claimer is the peer at the other end of the connection, never a peer named in the
 * message.
 */
export const CLAIM_PROTOCOL = '/kadmirror/claim/1.0.0'
/** How long an arbiter holds a claim, in ms (the holder's download has started or failed by then). */
export const CLAIM_HOLD_MS = 10 * second
/** Most claims one arbiter holds at once; past it the oldest goes (~150 bytes a claim). */
export const CLAIM_TABLE_MAX_ENTRIES = 20_000
/**
 * Later claimers an arbiter keeps per claim (the earliest) and names to the claimers after them: they wait for the
 * holder's bytes and relay what they receive, so a node the holder turns away (at its upload cap) can ask them.
 */
export const CLAIM_WAITING_NAMED = 4
/** Arbiters a claim is tried on, closest to the key first: the closest may have just stopped. */
export const CLAIM_ARBITERS_TRIED = 2
/** Longest key a claim may name, in bytes (a sha2-256 multihash is 34). */
export const CLAIM_MAX_KEY_BYTES = 64
/** Claim streams one peer may have open to this node at once. */
export const CLAIM_MAX_INBOUND_STREAMS = 4
/** How long the asking side keeps an unused lookup stream, in ms (below {@link LOOKUP_STREAM_IDLE_MS}). */
export const LOOKUP_SESSION_IDLE_MS = 60 * second
/** Lookup streams one peer may have open to this node at once. */
export const LOOKUP_MAX_INBOUND_STREAMS = 16
/**
 * How long a stream used for peer exchange is kept, in ms. Peer exchange asks random peers, a few times a
 * minute; on the lookup sessions it left a stream open to more than half the cluster after a mesh formed (at 100
 * nodes 0.7 MiB of heap per node), to peers the node may never look anything up from.
 */
export const EXCHANGE_SESSION_IDLE_MS = 1 * second
/** How long an unused stock DHT request stream stays open, in ms; below the 10 s a kad-dht server waits for the next message. */
export const DHT_SESSION_IDLE_MS = 5 * second
/** Longest frame of a provide or withdraw stream, in bytes: one key multihash (34 bytes for sha2-256). */
export const RECORD_FRAME_MAX_BYTES = 128
/** A provide or withdraw stream may take this many request timeouts (plus 1 ms per record) before it is given up. */
export const RECORDS_TIMEOUT_REQUESTS = 10
/** Peer ids kept encoded as multihash bytes for lookup answers; the cache is cleared when it grows past this. */
export const ID_BYTES_CACHE_SIZE = 10_000

// --- lookups ------------------------------------------------------------------------------------------------

/** Time a hedged lookup waits for a peer before also asking the next closest, in ms. */
export const LOOKUP_HEDGE_MS = 15

// --- membership and connections -----------------------------------------------------------------------------

/** Debounce of the work done when peers join (handing them records, asking them for peers), in ms. */
export const JOIN_DEBOUNCE_MS = 200
/** Peers that joined and are asked for the peers they know, per debounced join. */
export const JOIN_EXCHANGE_PEERS = 4
/** A peer-exchange request may take this many request timeouts: the answer lists 20 peers with addresses. */
export const PEER_EXCHANGE_TIMEOUT_REQUESTS = 5
/** Longest time a dial started by the router may take, in ms. */
export const DIAL_TIMEOUT_MS = 5 * second
/** How often each connection is checked with a ping, in ms (libp2p's monitor default, 10 s, costs N pings per 10 s per node). */
export const CONNECTION_PING_INTERVAL_MS = 1 * minute
/** A connection whose ping takes longer is closed, in ms. */
export const CONNECTION_PING_TIMEOUT_MS = 20 * second
/** How often connections due for a ping are looked for, in ms. */
export const CONNECTION_CHECK_TICK_MS = 1 * second
/** Identify run again on a connected peer missing from the view may take this many request timeouts. */
export const REIDENTIFY_TIMEOUT_REQUESTS = 10
/** Least time between two extra identify runs on one connected peer missing from the view, in ms. */
export const REIDENTIFY_INTERVAL_MS = 30 * second
/** How often connected peers missing from the view are looked for, in ms. */
export const RECONCILE_INTERVAL_MS = 2 * second
/** Reconcile ticks between two redial rounds (a round reads the whole peer store). */
export const REDIAL_EVERY_RECONCILES = 5
/**
 * After the view last grew, how long peers are asked for more peers on every reconcile tick, in ms. Longer than
 * the pause in growth while dials yield to smaller ids ({@link DIAL_YIELD_MS}, up to twice that).
 */
export const VIEW_GROWTH_WINDOW_MS = 10 * second
/** Longest wait between redials of a known DHT peer that is not connected, in ms. */
export const REDIAL_MAX_BACKOFF_MS = 5 * minute
/** Failed redials after which a peer is forgotten (it left the cluster). */
export const MAX_REDIAL_FAILURES = 8
/** Dials to learnt peers under way at once before more wait for the next redial round. */
export const MAX_PENDING_DIALS = 128
/**
 * How long a node waits before dialling a learnt peer with a smaller id, in ms (plus up to as much again at
 * random). While a cluster forms, both nodes of a pair learn of each other at about the same time; the one with
 * the smaller id dials at once and the other only if no connection came by then, so a pair rarely dials twice.
 */
export const DIAL_YIELD_MS = 1_500
/** Least time between two warnings that the process is out of file descriptors, in ms. */
export const DESCRIPTOR_WARNING_INTERVAL_MS = 1 * minute
/** Longest time one bootstrap round (register, ask for peers, dial them) may take, in ms. */
export const BOOTSTRAP_ROUND_TIMEOUT_MS = 30 * second
/**
 * Longest time `close()` spends telling the holders of this node's records to drop them, in ms: a node that shuts
 * down cleanly leaves no stale records for lookups to try first (Spegel holders let theirs expire).
 */
export const WITHDRAW_ON_CLOSE_TIMEOUT_MS = 1 * second
/** Longest time unregistering from the bootstrapper may delay `close()`, in ms. */
export const BOOTSTRAP_UNREGISTER_TIMEOUT_MS = 2 * second

// --- HTTP bootstrap -----------------------------------------------------------------------------------------

/** How often cert files are checked for rotation when no file event arrives, in ms. */
export const CERT_POLL_INTERVAL_MS = 5 * second
/** Port a bootstrap server listens on. */
export const BOOTSTRAP_SERVER_PORT = 8443
/** Most nodes a bootstrap server lists in one answer, chosen at random. */
export const BOOTSTRAP_SERVER_ANSWER_NODES = 100
/** Most nodes a bootstrap server holds; registrations beyond are refused with 503. */
export const BOOTSTRAP_SERVER_MAX_NODES = 100_000
/** Largest registration body a bootstrap server accepts, in bytes. */
export const BOOTSTRAP_REGISTRATION_MAX_BYTES = 64 * 1024
/** Most addresses one registration may carry. */
export const BOOTSTRAP_REGISTRATION_MAX_ADDRESSES = 16
/** Longest a bootstrap server waits for a request's headers, in ms. */
export const BOOTSTRAP_SERVER_HEADERS_TIMEOUT_MS = 10 * second
/** Longest a bootstrap server waits for a whole request, in ms. */
export const BOOTSTRAP_SERVER_REQUEST_TIMEOUT_MS = 15 * second

// Gossip membership (`membership: 'gossip'`): every node knows every member, connects to a bounded few.

/** Protocol of membership gossip between kadmirror nodes in gossip mode (pushed rumors and whole-table syncs). */
export const MEMBERS_PROTOCOL = '/kadmirror/members/1.0.0'
/** Connections a node in gossip mode keeps to other kadmirror nodes: a bound at any cluster size. */
export const DEFAULT_PEER_CONNECTIONS = 64
/** Closest members kept connected in gossip mode: they hold what this node would hold and watch each other. */
export const NEAR_CONNECTIONS = 16
/** Random members kept connected in gossip mode: short paths for rumors across the id space. */
export const RANDOM_CONNECTIONS = 8
/** How often a node with rumors sends them, in ms (bench/sim: news reaches 99 % of 10 000 nodes in about a second). */
export const GOSSIP_INTERVAL_MS = 200
/** Connected members each gossip round goes to. */
export const GOSSIP_FANOUT = 3
/** Rumors in one gossip message. */
export const RUMORS_PER_MESSAGE = 16
/** Times a node sends each rumor: this × ⌈log10(members + 1)⌉ (memberlist's multiplier). */
export const RETRANSMIT_MULTIPLIER = 4
/** How long a suspected member has to refute before it is declared dead, in ms. */
export const SUSPECT_TIMEOUT_MS = 5 * second
/** How long a dead or left member is remembered so that a late rumor cannot revive it, in ms. */
export const TOMBSTONE_MS = 30 * minute
/** How often a node tries one dead member again (a healed partition; then both sync their tables), in ms. */
export const TOMBSTONE_RETRY_INTERVAL_MS = 10 * second
/**
 * Longest time between two whole-table syncs of a node with a random connected member (they repair missed rumors),
 * in ms: the time is {@link ANTI_ENTROPY_MS_PER_MEMBER} per member, between {@link ANTI_ENTROPY_MIN_INTERVAL_MS}
 * and this.
 */
export const ANTI_ENTROPY_INTERVAL_MS = 1 * minute
/** Shortest time between two whole-table syncs, in ms (small clusters: a missed rumor is repaired within it). */
export const ANTI_ENTROPY_MIN_INTERVAL_MS = 5 * second
/**
 * Time between two whole-table syncs per member, in ms: a sync sends ~100 bytes a member, so this keeps the sync
 * traffic at ~1 KB/s a node up to 600 members (and ~17 KB/s at 10 000, where the interval is one minute).
 */
export const ANTI_ENTROPY_MS_PER_MEMBER = 100
/** How often the connection plan is checked (dials to planned members, closes over the bound), in ms. */
export const PLAN_INTERVAL_MS = 1 * second
/** How long a member is not dialled by the plan after a failed dial or after it closed our connection, in ms. */
export const PLAN_DIAL_BACKOFF_MS = 5 * second
/**
 * Planned members dialled at once (gossip mode): a node that has just learnt the membership dials its 24 planned
 * members a few at a time, so that a cluster forming (every node at once) does not time its own dials out.
 */
export const PLAN_DIAL_CONCURRENCY = 4
/** Longest backoff before dialling again a planned member that keeps closing this node's connection, in ms. */
export const PLAN_MAX_BACKOFF_MS = 5 * minute
/** A connection open this long is stable: a close after it counts as the first in a row, in ms. */
export const PLAN_STABLE_MS = 1 * minute
/**
 * Shortest time between two checks of a member this node does not plan that closed a connection it had dialled, in
 * ms: that member may have crashed, or only closed a connection it opened on demand (a lookup) for being over its
 * bound — a member doing so often costs one dial a minute, not one per close.
 */
export const UNPLANNED_CHECK_INTERVAL_MS = 1 * minute
/** A connection used this recently is not closed for being over the bound (a request may be on it), in ms. */
export const TRIM_GRACE_MS = 1 * second
/** Member records in one frame of a members stream (a 10 000-member sync is 10 frames). */
export const MEMBERS_PER_FRAME = 1000
/** Longest frame of a members stream, in bytes (1000 records of up to 8 addresses). */
export const MEMBERS_FRAME_MAX_BYTES = 1024 * 1024
/** Most members a table holds: records of new members beyond it are ignored (a hostile peer's flood). */
export const MAX_MEMBERS = 100_000
/** Addresses kept per member record. */
export const MAX_MEMBER_ADDRESSES = 8
/** Longest a members stream may take, in ms. */
export const MEMBERS_STREAM_TIMEOUT_MS = 10 * second
/** Longest a node waits, when it closes, for its "left" record to reach its connected members, in ms. */
export const LEAVE_TIMEOUT_MS = 500

// Lookups over UDP (gossip mode): a member without a connection is asked in one datagram, not after a dial.

/**
 * Size every lookup request datagram is padded to, in bytes. An answer is never larger than its request, so a
 * request with a forged source cannot make a node send more than it received (no amplification); 1024 bytes carry
 * an answer of ~22 providers and fit any network's MTU.
 */
export const DATAGRAM_REQUEST_BYTES = 1024
/** Time after which a lookup datagram not yet answered is sent once more, in ms (a datagram lost on the way). */
export const DATAGRAM_RETRY_MS = 50
/**
 * Unanswered lookup datagrams in a row after which a member is asked over a connection instead, for
 * {@link DATAGRAM_BACKOFF_MS} (its UDP port may be closed by a firewall that lets its TCP port through).
 */
export const DATAGRAM_FAILURES_BEFORE_STREAMS = 2
/** How long a member whose datagrams went unanswered is asked over connections only, in ms. */
export const DATAGRAM_BACKOFF_MS = 1 * minute
/** Members with unanswered datagrams remembered; past it the count starts again (members that left stay in it). */
export const DATAGRAM_FAILURES_TRACKED = 10_000
/** Most lookup datagrams a node answers in one second; more are dropped (a flood costs bounded CPU). */
export const DATAGRAM_ANSWERS_PER_SECOND = 20_000

// Local health (Lifeguard): a node whose own event loop is late cannot tell a slow member from its own slowness.

/** How often the event loop's lateness is read into the local health score, in ms. */
export const LOOP_HEALTH_INTERVAL_MS = 1 * second
/** The event loop counts as late in an interval when one of its turns waited this long, in ms. */
export const LOOP_LATE_MS = 200
/**
 * Highest local health score (0 is healthy; one more for each late interval, one less for each other). While it is
 * above 0 a failed dial suspects nobody, and suspicions run (1 + score) × {@link SUSPECT_TIMEOUT_MS}: at most 45 s.
 */
export const LOOP_HEALTH_MAX_SCORE = 8
