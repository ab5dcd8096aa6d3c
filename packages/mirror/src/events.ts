/**
 * What the mirror handler reports, for metrics and logs: one `response` per request, and one event per
 * peer failure and per digest mismatch.
 */

/** Where an answer came from. */
export type ResponseSource =
  /** Served from the node's own store. */
  | 'local'
  /** Streamed from a peer found through the router. */
  | 'peer'
  /** No one had the content: 404, the client goes upstream. */
  | 'miss'
  /** A registry filter or the registry list refused it: 404. */
  | 'filtered'
  /** The request was invalid (path, method, range, credentials). */
  | 'invalid'
  /**
   * Started (from a peer or the local store) but could not be completed: the response was cut so the client retries.
   * A cut local read is not a hit.
   */
  | 'failed'
  /** `/v2/`, `/readyz`, `/livez`. */
  | 'meta'
  /** A peer asked for a blob while this node served its maximum of uploads to peers: 429, the peer asks another. */
  | 'busy'
  /** Served to a peer from content this node is still receiving (its containerd's download from upstream). */
  | 'in-flight'

/** One finished request. */
export interface ResponseEvent {
  method: string
  /** The request's path, without the query (`/v2/library/nginx/manifests/1.27`, `/readyz`). */
  path: string
  /** The endpoint: `manifest`, `blob`, `base` (`/v2/`), `health`, or `other`. */
  kind: 'manifest' | 'blob' | 'base' | 'health' | 'other'
  /** The upstream registry (`?ns=`), when known. */
  registry?: string
  source: ResponseSource
  status: number
  /** Bytes of body sent. */
  bytes: number
  /** From the request's arrival to the end of the response, in ms. */
  durationMs: number
  /** Time spent finding and connecting to a peer, until its response headers, in ms (peer answers and misses). */
  resolveMs?: number
  /** The peer that served it (id as the router gives it). */
  peer?: string
}

/** Why a peer request failed, as a bounded set (for metrics). */
export type PeerFailureKind =
  /** The peer answered 404: its record was stale. */
  | 'not-held'
  /** It answered 429: it serves its maximum of uploads to peers (kadmirror's cap). */
  | 'busy'
  /** Its bytes hashed to another digest. */
  | 'digest-mismatch'
  /** It sent a blob slower than the least throughput (it trickles). */
  | 'slow'
  /** Its answer was refused (status, length, media type). */
  | 'bad-answer'
  /** It did not answer, or stopped sending, in time. */
  | 'timeout'
  /** The connection was refused, reset or closed. */
  | 'connection'
  | 'other'

/** A peer request that failed; the mirror moved on to the next peer. */
export interface PeerFailureEvent {
  peer: string
  registryUrl: string
  /** The DHT key being fetched (a digest or a tag reference). */
  key: string
  kind: PeerFailureKind
  /** What went wrong, in words. */
  reason: string
}

/**
 * Bytes that do not hash to the requested digest: from peers (the response was aborted and the peers are avoided) or
 * from the node's own store (`local`: the content is not served from the store again).
 */
export interface DigestMismatchEvent {
  /** Every peer that contributed bytes to the failed transfer (none for local content). */
  peers: string[]
  /** True when the node's own store held the wrong bytes (the content is no longer served from it). */
  local?: boolean
  expected: string
  actual: string
}

/**
 * A blob GET from the node's own client answered 404 after the peers: the client fetches it from upstream now, so its
 * download can be served to peers while it arrives (see `MirrorHandlerInit.inFlight`).
 */
export interface UpstreamEvent {
  digest: string
  /** True when this node was elected among the nodes that missed the blob at once (flash crowd); false: no election. */
  elected: boolean
}

/** The events of {@link MirrorHandler.events}. */
export interface MirrorEventMap {
  response: [ResponseEvent]
  upstream: [UpstreamEvent]
  'peer-failure': [PeerFailureEvent]
  'digest-mismatch': [DigestMismatchEvent]
}
