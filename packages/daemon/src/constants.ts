/**
 * Every tunable of the daemon, with its unit in the name. Defaults match Spegel's where Spegel has the knob, so
 * an operator's flags, probes and scrape configs keep working.
 */

const second = 1000

/** Registry mirror port (Spegel's `--registry-addr=:5000`; Spegel peers assume every peer serves on it). */
export const DEFAULT_REGISTRY_PORT = 5000
/** Router port (Spegel's `--router-addr=:5001`). */
export const DEFAULT_ROUTER_PORT = 5001
/** Metrics and debug port (Spegel's `--metrics-addr=:9090`). */
export const DEFAULT_METRICS_PORT = 9090
/** How long in-flight transfers may take to finish after SIGTERM before connections are cut, in ms. */
export const SHUTDOWN_GRACE_MS = 10 * second
/** How often a draining mirror closes connections that went idle, in ms. */
export const DRAIN_POLL_MS = 50
/** Buckets of `http_response_size_bytes`, in bytes: 1 KiB × 5^n up to ~2 GB, as Spegel's. */
export const RESPONSE_SIZE_BUCKETS_BYTES = Array.from({ length: 10 }, (_, n) => 1024 * 5 ** n)
/** Recent mirror requests the debug page lists. */
export const RECENT_REQUESTS = 50
/** The directory Spegel reads basic-auth credentials from (`username`, `password`). */
export const BASIC_AUTH_DIR = '/etc/secrets/basic-auth'
/**
 * V8's old-generation growth while memory is budgeted, in percent (V8's default lets it grow several times the
 * live heap while a mesh forms and keeps it; measured in bench/dht).
 */
export const HEAP_GROWING_PERCENT = 20
/**
 * V8 options a registry process runs with. `--max-semi-space-size=1` (MiB): a young generation of 3 MiB instead of
 * up to 48 (V8 sizes it for throughput; the daemon's allocations are short-lived and small), about 10 MiB of RSS.
 */
export const RUNTIME_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=1']
/**
 * glibc malloc settings a registry process runs with: two arenas instead of eight per core (each thread that
 * allocates would keep its own); a fixed mmap threshold of 32 KiB, so that buffers of that size and more (socket
 * reads of 64 KiB, copy buffers) go back to the system when freed instead of fragmenting the heap or raising glibc's
 * dynamic threshold (what kept RSS growing in bench/soak); and the heap's free top returned at once. bench/compare:
 * a node after a burst of pulls 148 → 129 MiB RSS (private dirty 92 → 73), with no throughput change beyond noise.
 */
export const RUNTIME_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: String(32 * 1024),
  MALLOC_TRIM_THRESHOLD_: '0'
}
/** First wait before opening the store again (containerd not up yet), in ms; it doubles up to the max. */
export const STORE_RETRY_MIN_BACKOFF_MS = 500
/** Longest wait between attempts to open the store, in ms. */
export const STORE_RETRY_MAX_BACKOFF_MS = 30 * second
/** Providers the debug page's measure looks for. */
export const MEASURE_LOOKUP_PROVIDERS = 10
/** Largest body of a debug page request (a measure form), in bytes. */
export const DEBUG_REQUEST_MAX_BYTES = 16 * 1024

// --- flash crowd: downloads served while they arrive ----------------------------------------------------------

/** How long containerd's download of a blob sent upstream is looked for before it is given up, in ms. */
export const IN_FLIGHT_FIND_TIMEOUT_MS = 5000
/** How often the content directory's `ingest/` is read while downloads are looked for (once for all of them), in ms. */
export const IN_FLIGHT_FIND_POLL_MS = 25
/** Most digests whose download is looked for at once; past it the oldest is given up. */
export const IN_FLIGHT_MAX_FOLLOWED = 256
/** While a download is looked for, the store is asked whether it was committed already every this many polls. */
export const IN_FLIGHT_STORE_CHECK_POLLS = 8
/** How often advertised downloads are checked (grown, committed, gone), in ms. */
export const IN_FLIGHT_CHECK_MS = 1000
/** An advertised download that has not grown for this long is withdrawn, in ms. */
export const IN_FLIGHT_STALL_MS = 30_000
/**
 * Quiet time (no mirror request) after a burst before the registry process runs one thorough garbage collection,
 * in ms (idle-collect.ts): a pull in progress asks every few hundred ms at most, so it is not interrupted; the
 * garbage of a burst is gone before the next one is likely. The collection stops the main thread for up to ~130 ms
 * (measured with a 20 MiB heap on a loaded 2-core machine), once per burst.
 */
export const IDLE_COLLECT_AFTER_MS = 3 * second
/** Blob bytes sent since the last collection that make a burst worth collecting after. */
export const IDLE_COLLECT_MIN_BYTES = 1024 * 1024
/** Requests served since the last collection that make a burst worth collecting after (misses and lookups). */
export const IDLE_COLLECT_MIN_REQUESTS = 100
