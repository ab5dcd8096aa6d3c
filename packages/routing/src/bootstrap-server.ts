/**
 * The server side of HTTP(S) bootstrapping (GEP-0043's external bootstrapper): accepts registrations over mTLS,
 * serves the current list, expires nodes that stop renewing, and picks up rotated certificates without a restart.
 * Also {@link idHandler}, a node's own Spegel-compatible `GET /id`.
 */
import { watch } from 'node:fs'
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse
} from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { type Logger, pino } from 'pino'
import { type BootstrapPeer, parseAddrInfo, toAddrInfo } from './bootstrap.ts'
import { CA_FILE, CERT_FILE, KEY_FILE, readCertDir, type TlsMaterial } from './cert-dir.ts'
import {
  BOOTSTRAP_REGISTRATION_MAX_ADDRESSES,
  BOOTSTRAP_REGISTRATION_MAX_BYTES,
  BOOTSTRAP_SERVER_ANSWER_NODES,
  BOOTSTRAP_SERVER_HEADERS_TIMEOUT_MS,
  BOOTSTRAP_SERVER_MAX_NODES,
  BOOTSTRAP_SERVER_NODE_TTL_MS,
  BOOTSTRAP_SERVER_PORT,
  BOOTSTRAP_SERVER_REQUEST_TIMEOUT_MS,
  CERT_POLL_INTERVAL_MS
} from './constants.ts'
import { InvalidBootstrapPeerError, InvalidCertDirError } from './errors.ts'
import { pickRandom } from './random-pick.ts'

/** Options of {@link createBootstrapServer}. */
export interface BootstrapServerInit {
  /** Port to listen on (0 for any). @default {@link BOOTSTRAP_SERVER_PORT} (8443) */
  port?: number
  /** Host to listen on; default all interfaces. */
  host?: string
  /**
   * Directory with `tls.crt` + `tls.key` (server certificate) and `ca.crt` (the CA that signs node client
   * certificates; clients without one are refused). Re-read when the files change. Required unless `insecure`.
   */
  certDir?: string
  /** Serve plain HTTP without client certificates (development only). */
  insecure?: boolean
  /** How long a node stays listed after its last registration, in ms. @default {@link BOOTSTRAP_SERVER_NODE_TTL_MS} (2 min) */
  nodeTtlMs?: number
  /** Most nodes returned per GET, chosen at random. @default {@link BOOTSTRAP_SERVER_ANSWER_NODES} (100) */
  limit?: number
  /** Most nodes held; registrations beyond are refused with 503. @default {@link BOOTSTRAP_SERVER_MAX_NODES} (100_000) */
  maxNodes?: number
  logger?: Logger
}

/** A running bootstrap server. */
export interface BootstrapServer {
  /** Base URL, such as `https://127.0.0.1:8443`. */
  readonly url: string
  /** The node list URL, `<url>/bootstrap-nodes`. */
  readonly listUrl: string
  /** Nodes currently listed. */
  nodes(): BootstrapPeer[]
  /** Re-reads the cert dir now (what the watcher does). */
  reloadCertificates(): Promise<void>
  close(): Promise<void>
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = value === undefined ? '' : JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

async function readRequestBody(req: IncomingMessage, limit: number): Promise<string> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength
    if (size > limit) throw new InvalidBootstrapPeerError(`registration is larger than ${limit} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Registered nodes, each until its registration expires. */
class NodeRegistry {
  private readonly registered = new Map<string, { peer: BootstrapPeer; expires: number }>()
  private readonly ttlMs: number
  private readonly maxNodes: number

  constructor(ttlMs: number, maxNodes: number) {
    this.ttlMs = ttlMs
    this.maxNodes = maxNodes
  }

  /** Nodes whose registration has not expired (expired ones are dropped). */
  live(): BootstrapPeer[] {
    const now = Date.now()
    const out: BootstrapPeer[] = []
    for (const [id, entry] of this.registered) {
      if (entry.expires <= now) this.registered.delete(id)
      else out.push(entry.peer)
    }
    return out
  }

  /** At most `limit` live nodes, chosen at random. */
  sample(limit: number): BootstrapPeer[] {
    return pickRandom(this.live(), limit)
  }

  /** Registers or renews a node with an id; false when the registry is full. */
  register(peer: BootstrapPeer & { id: string }): boolean {
    if (!this.registered.has(peer.id) && this.registered.size >= this.maxNodes) return false
    this.registered.set(peer.id, { peer, expires: Date.now() + this.ttlMs })
    return true
  }

  remove(id: string): boolean {
    return this.registered.delete(id)
  }
}

/** Parses a registration body: one AddrInfo (or a one-entry array) with an ID and a few addresses. @throws {InvalidBootstrapPeerError} */
function parseRegistration(text: string): BootstrapPeer & { id: string } {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new InvalidBootstrapPeerError('registration is not JSON')
  }
  const peer = parseAddrInfo(Array.isArray(value) && value.length === 1 ? value[0] : value)
  if (peer.id === undefined) throw new InvalidBootstrapPeerError('registration needs an ID')
  if (peer.addresses.length > BOOTSTRAP_REGISTRATION_MAX_ADDRESSES)
    throw new InvalidBootstrapPeerError(
      `registration has more than ${BOOTSTRAP_REGISTRATION_MAX_ADDRESSES} addresses`
    )
  return peer as BootstrapPeer & { id: string }
}

/** Handles `POST /bootstrap-nodes`: 204 when registered, 400 for a bad registration, 503 when full. */
async function handleRegistration(
  req: IncomingMessage,
  res: ServerResponse,
  registry: NodeRegistry
): Promise<void> {
  let peer: BootstrapPeer & { id: string }
  try {
    peer = parseRegistration(await readRequestBody(req, BOOTSTRAP_REGISTRATION_MAX_BYTES))
  } catch (err) {
    if (err instanceof InvalidBootstrapPeerError) return sendJson(res, 400, { error: err.message })
    throw err
  }
  if (!registry.register(peer)) return sendJson(res, 503, { error: 'too many nodes' })
  res.writeHead(204).end()
}

/** Routes one bootstrap server request. */
async function routeRequest(
  req: IncomingMessage,
  res: ServerResponse,
  registry: NodeRegistry,
  limit: number
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://bootstrap').pathname.replace(/\/+$/, '')
  if (path === '/healthz' && req.method === 'GET') return sendJson(res, 200, { ok: true })
  if (path === '/bootstrap-nodes' || path === '/id') {
    if (req.method === 'GET') return sendJson(res, 200, registry.sample(limit).map(toAddrInfo))
    if (req.method === 'POST' && path === '/bootstrap-nodes') return handleRegistration(req, res, registry)
    return sendJson(res, 405, { error: `${req.method} is not allowed on ${path}` })
  }
  if (path.startsWith('/bootstrap-nodes/') && req.method === 'DELETE') {
    const id = decodeURIComponent(path.slice('/bootstrap-nodes/'.length))
    if (!registry.remove(id)) return sendJson(res, 404, { error: 'unknown node' })
    res.writeHead(204).end()
    return
  }
  return sendJson(res, 404, { error: 'not found' })
}

type ServerTls = TlsMaterial & { ca: string; cert: string; key: string }

/** The server's certificate, key and client CA from the cert dir. @throws {InvalidCertDirError} when one is missing. */
async function serverTls(certDir: string | undefined): Promise<ServerTls> {
  if (certDir === undefined) throw new InvalidCertDirError('a bootstrap server needs certDir unless insecure')
  const material = await readCertDir(certDir)
  if (material.cert === undefined || material.key === undefined || material.ca === undefined)
    throw new InvalidCertDirError(`${certDir} needs ${CERT_FILE}, ${KEY_FILE} and ${CA_FILE}`)
  return material as ServerTls
}

/** An HTTP server, or an HTTPS one that requires client certificates signed by the cert dir's CA. */
async function createListener(
  init: BootstrapServerInit,
  listener: (req: IncomingMessage, res: ServerResponse) => void
): Promise<{ server: Server | HttpsServer; version?: string }> {
  if (init.insecure === true) return { server: createHttpServer(listener) }
  const tls = await serverTls(init.certDir)
  const options = { ca: tls.ca, cert: tls.cert, key: tls.key, requestCert: true, rejectUnauthorized: true }
  return { server: createHttpsServer(options, listener), version: tls.version }
}

/** Re-reads the cert dir on file events and every few seconds; returns a function that stops. */
function watchCertificates(certDir: string, reload: () => void, log: Logger): () => void {
  const watcher = watch(certDir, { persistent: false }, reload)
  watcher.on('error', (err) => log.warn({ err }, 'cert dir watcher failed; polling only'))
  const poll = setInterval(reload, CERT_POLL_INTERVAL_MS)
  poll.unref()
  return () => {
    watcher.close()
    clearInterval(poll)
  }
}

/** Listens on `port` and `host`; resolves the server's base URL. */
async function listen(server: Server | HttpsServer, port: number, host: string | undefined, scheme: string) {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const hostname = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `${scheme}://${hostname}:${address.port}`
}

/**
 * Starts a bootstrap server: `POST /bootstrap-nodes` registers or renews a node (AddrInfo JSON with a peer
 * id), `GET /bootstrap-nodes` (and Spegel's `/id`) lists live nodes, `DELETE /bootstrap-nodes/<id>` removes
 * one, `GET /healthz` answers 200.
 * @throws {InvalidCertDirError} when the cert dir lacks the server certificate or the CA.
 */
export async function createBootstrapServer(init: BootstrapServerInit): Promise<BootstrapServer> {
  const log = init.logger ?? pino({ level: 'silent' })
  const registry = new NodeRegistry(
    init.nodeTtlMs ?? BOOTSTRAP_SERVER_NODE_TTL_MS,
    init.maxNodes ?? BOOTSTRAP_SERVER_MAX_NODES
  )
  const limit = init.limit ?? BOOTSTRAP_SERVER_ANSWER_NODES
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    routeRequest(req, res, registry, limit).catch((err: unknown) => {
      log.error({ err }, 'bootstrap server request failed')
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' })
      else res.destroy()
    })
  }
  const created = await createListener(init, listener)
  const server = created.server
  let version = created.version
  server.headersTimeout = BOOTSTRAP_SERVER_HEADERS_TIMEOUT_MS
  server.requestTimeout = BOOTSTRAP_SERVER_REQUEST_TIMEOUT_MS

  const reloadCertificates = async (): Promise<void> => {
    if (init.insecure === true) return
    const tls = await serverTls(init.certDir)
    if (tls.version === version) return
    ;(server as HttpsServer).setSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key })
    version = tls.version
    log.info({ certDir: init.certDir }, 'bootstrap server certificates reloaded')
  }
  const reload = (): void => {
    reloadCertificates().catch((err: unknown) =>
      log.error({ err }, 'could not reload bootstrap server certificates; keeping the old ones')
    )
  }
  const stopWatching =
    init.insecure === true || init.certDir === undefined
      ? () => {}
      : watchCertificates(init.certDir, reload, log)

  const scheme = init.insecure === true ? 'http' : 'https'
  const url = await listen(server, init.port ?? BOOTSTRAP_SERVER_PORT, init.host, scheme)
  return {
    url,
    listUrl: `${url}/bootstrap-nodes`,
    nodes: () => registry.live(),
    reloadCertificates,
    async close() {
      stopWatching()
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    }
  }
}

/** A node's Spegel-compatible `GET /id` handler: a one-entry AddrInfo array of `self()`. */
export function idHandler(source: {
  self(): BootstrapPeer
}): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'only GET' })
    sendJson(res, 200, [toAddrInfo(source.self())])
  }
}
