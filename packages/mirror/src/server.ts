/**
 * `createMirrorServer`: the mirror handler in a `node:http` server, with OCI error bodies also for what Node
 * refuses before a handler runs (oversized headers, malformed requests).
 */

import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { ociErrorBody } from '@kadmirror/oci'
import { type AllowList, createAllowList } from '@kadmirror/routing'
import {
  CLIENT_KEEP_ALIVE_TIMEOUT_MS,
  CLIENT_STALL_TIMEOUT_MS,
  CONNECTIONS_CHECK_INTERVAL_MS,
  DEFAULT_REGISTRY_PORT,
  HEADERS_TIMEOUT_MS,
  MAX_CONNECTIONS,
  MAX_CONNECTIONS_PER_CLIENT,
  MAX_HEADER_BYTES
} from './constants.ts'
import { MirrorAlreadyServingError } from './errors.ts'
import { createMirrorHandler, type MirrorHandler, type MirrorHandlerInit } from './handler.ts'
import { sendError } from './respond.ts'

/** Where and how a mirror server listens. */
export interface MirrorListenOptions {
  /** TCP port; default 5000 (Spegel's registry port); 0 picks a free one. */
  port?: number
  /** Address to listen on; default all interfaces (`::`, which also takes IPv4 where the system allows). */
  host?: string
  /** Largest request head accepted, in bytes; larger ones get 431 with an OCI error body. @default {@link MAX_HEADER_BYTES} (16384) */
  maxHeaderSize?: number
  /** Longest time a client may take to send a request head, in ms. @default {@link HEADERS_TIMEOUT_MS} (10 s) */
  headersTimeoutMs?: number
  /** Most connections held at once. @default {@link MAX_CONNECTIONS} (4096) */
  maxConnections?: number
  /** Most connections one client address may hold at once. @default {@link MAX_CONNECTIONS_PER_CLIENT} (256) */
  maxConnectionsPerClient?: number
  /**
   * A connection with no traffic either way for this long, in ms — a client that stopped reading a response, one
   * that went silent — is closed. @default {@link CLIENT_STALL_TIMEOUT_MS} (60 s)
   */
  clientStallTimeoutMs?: number
  /**
   * CIDR networks (`10.0.0.0/8`, `fd00::/8`) clients may connect from; other connections are closed at once.
   * Loopback is always allowed (containerd on the node). Default: any address.
   * @throws {InvalidAccessRuleError} (from `@kadmirror/routing`) for an entry that is not an IP network.
   */
  allowedNetworks?: readonly string[]
}

/** Options of {@link createMirrorServer}: the handler's, plus where to listen. */
export interface MirrorServerInit extends MirrorHandlerInit, MirrorListenOptions {}

/**
 * A listening mirror server whose handler comes later: the port is known before the router is made (a
 * libp2p router announces the registry port to its peers), then {@link MirrorListener.serve} attaches the
 * handler. Until then every request gets 503 with an OCI error body.
 */
export interface MirrorListener {
  readonly server: Server
  /** Base URL, such as `http://127.0.0.1:5000` (the listen address, or 127.0.0.1 when listening on all). */
  readonly url: string
  /** The port listened on. */
  readonly port: number
  /** Creates the handler and serves requests with it. Call once. */
  serve(init: MirrorHandlerInit): MirrorHandler
  /** Stops listening, closes open connections and the handler's peer connections. Idempotent. */
  close(): Promise<void>
}

/** A listening mirror. */
export interface MirrorServer extends Omit<MirrorListener, 'serve'> {
  readonly handler: MirrorHandler
}

/**
 * A `clientError` listener for a `node:http` server that answers what Node refuses before any handler runs
 * (headers over `maxHeaderSize`: 431; a head that took over the headers timeout: 408; a malformed request: 400) with
 * an OCI error body, then closes the connection.
 * `createMirrorServer` installs it; add it to your own server with `server.on('clientError', answerClientError)`.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy()
    return
  }
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['431 Request Header Fields Too Large', 'request headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['408 Request Timeout', 'the request head took too long']
        : ['400 Bad Request', 'malformed HTTP request']
  const body = JSON.stringify(ociErrorBody('UNSUPPORTED', message))
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  )
}

const LOOPBACK = createAllowList(['127.0.0.0/8', '::1'])

/** The timer that closes a connection whose first request head does not come in time. */
const FIRST_HEAD = Symbol('first request head')

/**
 * Bounds each connection: one from an address that already holds `limit` connections is refused (closed at once), and
 * one whose first request head has not arrived within `headersTimeoutMs` is closed (Node's own headers timeout starts
 * only with the first byte, so a connection that sends nothing would stay forever).
 */
function limitConnections(
  server: Server,
  limit: number,
  headersTimeoutMs: number,
  allowed: AllowList | undefined
): void {
  const open = new Map<string, number>()
  server.on('request', (req: IncomingMessage) => {
    clearTimeout((req.socket as Socket & { [FIRST_HEAD]?: NodeJS.Timeout })[FIRST_HEAD])
  })
  server.on('connection', (socket: Socket & { [FIRST_HEAD]?: NodeJS.Timeout }) => {
    const client = socket.remoteAddress ?? ''
    const count = open.get(client) ?? 0
    if (count >= limit || (allowed !== undefined && !allowed.allows(client) && !LOOPBACK.allows(client))) {
      socket.destroy()
      return
    }
    socket[FIRST_HEAD] = setTimeout(() => socket.destroy(), headersTimeoutMs).unref()
    open.set(client, count + 1)
    socket.once('close', () => {
      clearTimeout(socket[FIRST_HEAD])
      const left = (open.get(client) ?? 1) - 1
      if (left === 0) open.delete(client)
      else open.set(client, left)
    })
  })
}

/**
 * Listens for mirror requests before the handler exists (see {@link MirrorListener}).
 * @throws when the port cannot be bound (for example `EADDRINUSE`).
 */
export async function listenMirror(options: MirrorListenOptions = {}): Promise<MirrorListener> {
  let handler: MirrorHandler | undefined
  const headersTimeout = options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS
  const server = createServer(
    {
      maxHeaderSize: options.maxHeaderSize ?? MAX_HEADER_BYTES,
      keepAliveTimeout: CLIENT_KEEP_ALIVE_TIMEOUT_MS,
      // No overall request timeout: a large blob to a slow client may take long. The head must come in time.
      requestTimeout: 0,
      headersTimeout,
      connectionsCheckingInterval: Math.min(CONNECTIONS_CHECK_INTERVAL_MS, headersTimeout)
    },
    (req, res) => {
      if (handler !== undefined) handler(req, res)
      else sendError(res, 503, 'UNSUPPORTED', 'the mirror is starting')
    }
  )
  server.maxConnections = options.maxConnections ?? MAX_CONNECTIONS
  // Node closes a socket idle for this long (no 'timeout' listener): a stuck client cannot pin a transfer for ever.
  server.timeout = options.clientStallTimeoutMs ?? CLIENT_STALL_TIMEOUT_MS
  const allowed = options.allowedNetworks === undefined ? undefined : createAllowList(options.allowedNetworks)
  limitConnections(
    server,
    options.maxConnectionsPerClient ?? MAX_CONNECTIONS_PER_CLIENT,
    headersTimeout,
    allowed
  )
  server.on('clientError', answerClientError)
  server.listen(options.port ?? DEFAULT_REGISTRY_PORT, options.host)
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  const host =
    options.host === undefined || options.host === '::' || options.host === '0.0.0.0'
      ? '127.0.0.1'
      : address.family === 'IPv6'
        ? `[${address.address}]`
        : address.address
  let closing: Promise<void> | undefined
  return {
    server,
    url: `http://${host}:${address.port}`,
    port: address.port,
    serve(init) {
      if (handler !== undefined) throw new MirrorAlreadyServingError()
      handler = createMirrorHandler(init)
      return handler
    },
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeAllConnections()
        await closed
        await handler?.close()
      })()
      return closing
    }
  }
}

/**
 * Starts an HTTP server running {@link createMirrorHandler}: {@link listenMirror} and `serve` in one step, for
 * a router that does not need the port first.
 * @throws when the port cannot be bound (for example `EADDRINUSE`).
 */
export async function createMirrorServer(init: MirrorServerInit): Promise<MirrorServer> {
  const {
    port,
    host,
    maxHeaderSize,
    headersTimeoutMs,
    maxConnections,
    maxConnectionsPerClient,
    allowedNetworks,
    clientStallTimeoutMs,
    ...handlerInit
  } = init
  const listener = await listenMirror({
    ...(port === undefined ? {} : { port }),
    ...(host === undefined ? {} : { host }),
    ...(maxHeaderSize === undefined ? {} : { maxHeaderSize }),
    ...(headersTimeoutMs === undefined ? {} : { headersTimeoutMs }),
    ...(maxConnections === undefined ? {} : { maxConnections }),
    ...(maxConnectionsPerClient === undefined ? {} : { maxConnectionsPerClient }),
    ...(allowedNetworks === undefined ? {} : { allowedNetworks }),
    ...(clientStallTimeoutMs === undefined ? {} : { clientStallTimeoutMs })
  })
  const handler = listener.serve(handlerInit)
  return { server: listener.server, url: listener.url, port: listener.port, handler, close: listener.close }
}
