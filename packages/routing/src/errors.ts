/**
 * Every error the routing package throws on purpose, one class per kind, each with a stable `name` and `code`
 * (as undici's `lib/core/errors.js`). The README's error table lists the same codes; a test checks the two agree.
 * Callers branch on `code` (or `instanceof`), never on the message.
 */

/** The codes of {@link RoutingError}, one per error class. */
export const ROUTING_ERROR_CODES = [
  'ERR_ROUTER_CLOSED',
  'ERR_INVALID_BOOTSTRAP_PEER',
  'ERR_INVALID_CERT_DIR',
  'ERR_INVALID_PEER_KEY',
  'ERR_REQUEST_TIMEOUT',
  'ERR_SESSION_CLOSED',
  'ERR_INVALID_FRAME',
  'ERR_INVALID_ACCESS_RULE',
  'ERR_NO_ARBITER'
] as const

/** One of {@link ROUTING_ERROR_CODES}. */
export type RoutingErrorCode = (typeof ROUTING_ERROR_CODES)[number]

/** The base of every routing error: `code` says which kind it is. */
export abstract class RoutingError extends Error {
  abstract readonly code: RoutingErrorCode
}

/** The router was used after `close()`. */
export class RouterClosedError extends RoutingError {
  override name = 'RouterClosedError'
  readonly code = 'ERR_ROUTER_CLOSED'

  constructor(message = 'the router is closed') {
    super(message)
  }
}

/** A bootstrap entry (multiaddr, peer id, AddrInfo JSON) that cannot be used. */
export class InvalidBootstrapPeerError extends RoutingError {
  override name = 'InvalidBootstrapPeerError'
  readonly code = 'ERR_INVALID_BOOTSTRAP_PEER'
}

/** A cert dir is unusable (a certificate without its key, unreadable files). */
export class InvalidCertDirError extends RoutingError {
  override name = 'InvalidCertDirError'
  readonly code = 'ERR_INVALID_CERT_DIR'
}

/** The key file is not a PEM PKCS#8 Ed25519 private key. */
export class InvalidPeerKeyError extends RoutingError {
  override name = 'InvalidPeerKeyError'
  readonly code = 'ERR_INVALID_PEER_KEY'
}

/** A peer did not answer a request within its time; the session it was sent on is closed. */
export class RequestTimeoutError extends RoutingError {
  // libp2p and AbortSignal.timeout name their timeouts so; code that checks `name` treats all alike.
  override name = 'TimeoutError'
  readonly code = 'ERR_REQUEST_TIMEOUT'
}

/** A request session ended (closed, or the peer closed the stream) before a request was answered. */
export class SessionClosedError extends RoutingError {
  override name = 'SessionClosedError'
  readonly code = 'ERR_SESSION_CLOSED'
}

/** A frame longer than the channel allows, or a length prefix that is not a varint. */
export class InvalidFrameError extends RoutingError {
  override name = 'InvalidFrameError'
  readonly code = 'ERR_INVALID_FRAME'
}

/** An allow-list entry is not an IP network, or a private-network key file is not a swarm key. */
export class InvalidAccessRuleError extends RoutingError {
  override name = 'InvalidAccessRuleError'
  readonly code = 'ERR_INVALID_ACCESS_RULE'
}

/** No arbiter answered a claim (every one tried failed or was too slow). */
export class NoArbiterError extends RoutingError {
  override name = 'NoArbiterError'
  readonly code = 'ERR_NO_ARBITER'

  constructor(message = 'no arbiter answered the claim') {
    super(message)
  }
}
