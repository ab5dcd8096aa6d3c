/**
 * @packageDocumentation
 * The OCI registry mirror of a kadmirror node, as a Node request handler: content in the node's own store is
 * served directly; content it lacks is streamed from a peer the router finds, hashed as it passes; when no
 * peer has it, a fast 404 with an OCI error body sends the client (containerd) to the upstream registry.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http'
 * import { createMirrorHandler } from '@kadmirror/mirror'
 *
 * const handler = createMirrorHandler({ store, router })
 * createServer(handler).listen(5000)
 * handler.events.on('response', (e) => console.log(e.kind, e.source, e.status, e.durationMs))
 * ```
 */

export {
  type ClaimClock,
  type ClaimRole,
  Claims,
  type ClaimsInit,
  claimKey,
  claimRank,
  type Election
} from './claims.ts'
export * as constants from './constants.ts'
export {
  ContentTruncatedError,
  DigestMismatchError,
  HashWorkerError,
  InvalidMirrorOptionError,
  MIRROR_ERROR_CODES,
  MirrorAlreadyServingError,
  MirrorError,
  type MirrorErrorCode,
  NotHeldError,
  PeerAnswerError
} from './errors.ts'
export type {
  DigestMismatchEvent,
  MirrorEventMap,
  PeerFailureEvent,
  PeerFailureKind,
  ResponseEvent,
  ResponseSource,
  UpstreamEvent
} from './events.ts'
export {
  type Credentials,
  createMirrorHandler,
  type FlashCrowdOptions,
  imageFilterOf,
  type MirrorHandler,
  type MirrorHandlerInit
} from './handler.ts'
export {
  type GrowingContent,
  type GrowingLimits,
  GrowingStalledError,
  type InFlightContent,
  openGrowing,
  sendGrowing
} from './in-flight.ts'
export {
  answerClientError,
  createMirrorServer,
  listenMirror,
  type MirrorListener,
  type MirrorListenOptions,
  type MirrorServer,
  type MirrorServerInit
} from './server.ts'
