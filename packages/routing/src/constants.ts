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
