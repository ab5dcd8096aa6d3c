/**
 * HTTP(S) bootstrapping, as in Gardener's GEP-0043: the daemon may run as a systemd unit before kubelet, so
 * cluster DNS is not there yet and nodes find each other through an external bootstrapper.
 *
 * - {@link httpBootstrapper}: the node side. `GET <url>` returns live nodes as a JSON AddrInfo array — the
 *   shape Spegel's `/id` serves, so either side can use the other's — and, for our server, `POST <url>`
 *   registers the node. Mutual TLS with a CA and a client certificate from a cert dir (`ca.crt`, `tls.crt`,
 *   `tls.key`, as Spegel's `--http-bootstrap-cert-dir`); the files are re-read when they change.
 * - {@link createBootstrapServer}: the server side. Accepts registrations over mTLS, serves the current list,
 *   expires nodes that stop renewing, and picks up rotated certificates without a restart.
 * - {@link idHandler}: a node's own Spegel-compatible `GET /id`.
 */
import { watch } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse
} from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { type Logger, pino } from 'pino'
import { Agent, request } from 'undici'
import {
  type BootstrapPeer,
  type Bootstrapper,
  parseAddrInfo,
  parseAddrInfos,
  toAddrInfo
} from './bootstrap.ts'
import {
  BOOTSTRAP_SERVER_NODE_TTL_MS,
  DEFAULT_ROUTER_PORT,
  HTTP_BOOTSTRAP_MAX_BODY_BYTES,
  HTTP_BOOTSTRAP_MAX_ENTRIES,
  HTTP_BOOTSTRAP_TIMEOUT_MS
} from './constants.ts'
import { InvalidBootstrapPeerError, InvalidCertDirError } from './errors.ts'

/** File names in a cert dir (Kubernetes TLS secret keys, as Spegel reads them). */
export const CA_FILE = 'ca.crt'
export const CERT_FILE = 'tls.crt'
export const KEY_FILE = 'tls.key'
/** How often cert files are checked for rotation when no file event arrives, in ms. */
const CERT_POLL_MS = 5_000
/** Largest registration body accepted by the server, in bytes. */
const MAX_REGISTRATION_BYTES = 64 * 1024
/** Most addresses one registration may carry. */
const MAX_REGISTRATION_ADDRESSES = 16

/** PEM contents of a cert dir; `version` changes whenever a file changes. */
export interface TlsMaterial {
  ca?: string
  cert?: string
  key?: string
  version: string
}

async function readOptional(path: string): Promise<{ text?: string; version: string }> {
  try {
    const info = await stat(path)
    return { text: await readFile(path, 'utf8'), version: `${info.mtimeMs}:${info.size}:${info.ino}` }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 'absent' }
    throw new InvalidCertDirError(`cannot read ${path}: ${(err as Error).message}`)
  }
}

/**
 * Reads `ca.crt`, `tls.crt` and `tls.key` from `dir`; each may be absent, but not a certificate without its key.
 * @throws {InvalidCertDirError}
 */
export async function readCertDir(dir: string): Promise<TlsMaterial> {
  const [ca, cert, key] = await Promise.all(
    [CA_FILE, CERT_FILE, KEY_FILE].map((name) => readOptional(join(dir, name)))
  )
  if ((cert?.text === undefined) !== (key?.text === undefined)) {
    throw new InvalidCertDirError(`${dir}: ${CERT_FILE} and ${KEY_FILE} must both be present or both absent`)
  }
  const material: TlsMaterial = { version: [ca, cert, key].map((f) => f?.version).join('|') }
  if (ca?.text !== undefined) material.ca = ca.text
  if (cert?.text !== undefined) material.cert = cert.text
  if (key?.text !== undefined) material.key = key.text
  return material
}

/** Reads a response body as text, refusing more than `limit` bytes. */
async function readBody(body: AsyncIterable<Uint8Array>, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > limit) throw new InvalidBootstrapPeerError(`bootstrap answer is larger than ${limit} bytes`)
    chunks.push(Buffer.from(chunk))
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Options of {@link httpBootstrapper}. */
export interface HttpBootstrapperInit {
  /** The list URL: `https://bootstrap.example:8443/bootstrap-nodes` (our server) or `http://node:5001/id` (Spegel). */
  url: string
  /** Directory with `ca.crt` (server CA) and `tls.crt` + `tls.key` (client certificate). Re-read when the files change. */
  certDir?: string
  /** Most entries used from an answer (Spegel: 3); default 3. */
  limit?: number
  /** Router port added to addresses that name only an IP; default 5001. */
  routerPort?: number
  /** Register this node with `POST <url>`; default true for URLs ending in `/bootstrap-nodes`. */
  register?: boolean
  /** Longest time one request may take, in ms; default 5000. */
  timeoutMs?: number
  logger?: Logger
}

/**
 * The node side of HTTP(S) bootstrapping.
 * @throws {TypeError} at creation for a URL that is not http(s).
 */
export function httpBootstrapper(init: HttpBootstrapperInit): Bootstrapper {
  const url = new URL(init.url)
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TypeError(`bootstrap URL ${init.url} is not http(s)`)
  const log = init.logger ?? pino({ level: 'silent' })
  const timeoutMs = init.timeoutMs ?? HTTP_BOOTSTRAP_TIMEOUT_MS
  const shouldRegister = init.register ?? url.pathname.endsWith('/bootstrap-nodes')
  let agent: Agent | undefined
  let version: string | undefined
  let registrationRefused = false

  /** The agent for the current cert files; a new one (and the old closed) when they changed. */
  const currentAgent = async (): Promise<Agent> => {
    const material = init.certDir === undefined ? { version: 'none' } : await readCertDir(init.certDir)
    if (agent !== undefined && material.version === version) return agent
    const previous = agent
    agent = new Agent({
      connect: {
        ...('ca' in material && material.ca !== undefined ? { ca: material.ca } : {}),
        ...('cert' in material && material.cert !== undefined
          ? { cert: material.cert, key: material.key }
          : {}),
        timeout: timeoutMs
      },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs
    })
    if (previous !== undefined)
      log.info({ certDir: init.certDir }, 'bootstrap certificates changed; using the new ones')
    version = material.version
    previous?.close().catch(() => {})
    return agent
  }

  const call = async (
    method: 'GET' | 'POST' | 'DELETE',
    target: URL,
    signal: AbortSignal | undefined,
    body?: string
  ) => {
    const dispatcher = await currentAgent()
    const response = await request(target, {
      method,
      dispatcher,
      signal:
        signal === undefined
          ? AbortSignal.timeout(timeoutMs)
          : AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } })
    })
    const text = await readBody(response.body, HTTP_BOOTSTRAP_MAX_BODY_BYTES)
    return { status: response.statusCode, text }
  }

  return {
    async peers(options = {}) {
      const { status, text } = await call('GET', url, options.signal)
      if (status !== 200)
        throw new InvalidBootstrapPeerError(`bootstrap server answered ${status} to GET ${url.href}`)
      return parseAddrInfos(text, {
        limit: init.limit ?? HTTP_BOOTSTRAP_MAX_ENTRIES,
        port: init.routerPort ?? DEFAULT_ROUTER_PORT
      })
    },
    async register(self, options = {}) {
      if (!shouldRegister || registrationRefused) return
      const { status } = await call('POST', url, options.signal, JSON.stringify(toAddrInfo(self)))
      if (status === 404 || status === 405) {
        registrationRefused = true
        log.info(
          { url: url.href, status },
          'bootstrap server does not take registrations; only reading its list'
        )
        return
      }
      if (status < 200 || status >= 300)
        throw new InvalidBootstrapPeerError(`bootstrap server answered ${status} to a registration`)
    },
    async unregister(self, options = {}) {
      if (!shouldRegister || registrationRefused || self.id === undefined) return
      const target = new URL(url)
      target.pathname = `${url.pathname.replace(/\/+$/, '')}/${encodeURIComponent(self.id)}`
      await call('DELETE', target, options.signal)
    },
    async close() {
      await agent?.close().catch(() => {})
      agent = undefined
    }
  }
}

/** Options of {@link createBootstrapServer}. */
export interface BootstrapServerInit {
  /** Port to listen on; default 8443 (0 for any). */
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
  /** How long a node stays listed after its last registration, in ms; default 2 min. */
  nodeTtlMs?: number
  /** Most nodes returned per GET, chosen at random; default 100. */
  limit?: number
  /** Most nodes held; registrations beyond are refused with 503. Default 100 000. */
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

/**
 * Starts a bootstrap server: `POST /bootstrap-nodes` registers or renews a node (AddrInfo JSON with a peer
 * id), `GET /bootstrap-nodes` (and Spegel's `/id`) lists live nodes, `DELETE /bootstrap-nodes/<id>` removes
 * one, `GET /healthz` answers 200.
 * @throws {InvalidCertDirError} when the cert dir lacks the server certificate or the CA.
 */
export async function createBootstrapServer(init: BootstrapServerInit): Promise<BootstrapServer> {
  const log = init.logger ?? pino({ level: 'silent' })
  const ttlMs = init.nodeTtlMs ?? BOOTSTRAP_SERVER_NODE_TTL_MS
  const limit = init.limit ?? 100
  const maxNodes = init.maxNodes ?? 100_000
  const registered = new Map<string, { peer: BootstrapPeer; expires: number }>()

  const live = (): BootstrapPeer[] => {
    const now = Date.now()
    const out: BootstrapPeer[] = []
    for (const [id, entry] of registered) {
      if (entry.expires <= now) registered.delete(id)
      else out.push(entry.peer)
    }
    return out
  }

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://bootstrap').pathname.replace(/\/+$/, '')
    try {
      if (path === '/healthz' && req.method === 'GET') return sendJson(res, 200, { ok: true })
      if (path === '/bootstrap-nodes' || path === '/id') {
        if (req.method === 'GET') {
          const nodes = live()
          for (let i = nodes.length - 1; i > 0; i--) {
            const j = Math.floor(Math.random() * (i + 1))
            ;[nodes[i], nodes[j]] = [nodes[j] as BootstrapPeer, nodes[i] as BootstrapPeer]
          }
          return sendJson(res, 200, nodes.slice(0, limit).map(toAddrInfo))
        }
        if (req.method === 'POST' && path === '/bootstrap-nodes') {
          let peer: BootstrapPeer
          try {
            const text = await readRequestBody(req, MAX_REGISTRATION_BYTES)
            let value: unknown
            try {
              value = JSON.parse(text)
            } catch {
              throw new InvalidBootstrapPeerError('registration is not JSON')
            }
            peer = parseAddrInfo(Array.isArray(value) && value.length === 1 ? value[0] : value)
            if (peer.id === undefined) throw new InvalidBootstrapPeerError('registration needs an ID')
            if (peer.addresses.length > MAX_REGISTRATION_ADDRESSES) {
              throw new InvalidBootstrapPeerError(
                `registration has more than ${MAX_REGISTRATION_ADDRESSES} addresses`
              )
            }
          } catch (err) {
            if (err instanceof InvalidBootstrapPeerError) return sendJson(res, 400, { error: err.message })
            throw err
          }
          if (!registered.has(peer.id) && registered.size >= maxNodes)
            return sendJson(res, 503, { error: 'too many nodes' })
          registered.set(peer.id, { peer, expires: Date.now() + ttlMs })
          res.writeHead(204).end()
          return
        }
        return sendJson(res, 405, { error: `${req.method} is not allowed on ${path}` })
      }
      if (path.startsWith('/bootstrap-nodes/') && req.method === 'DELETE') {
        const id = decodeURIComponent(path.slice('/bootstrap-nodes/'.length))
        return registered.delete(id)
          ? void res.writeHead(204).end()
          : sendJson(res, 404, { error: 'unknown node' })
      }
      return sendJson(res, 404, { error: 'not found' })
    } catch (err) {
      log.error({ err }, 'bootstrap server request failed')
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' })
      else res.destroy()
    }
  }

  let server: Server | HttpsServer
  let version: string | undefined
  const serverTls = async (): Promise<TlsMaterial & { ca: string; cert: string; key: string }> => {
    if (init.certDir === undefined)
      throw new InvalidCertDirError('a bootstrap server needs certDir unless insecure')
    const material = await readCertDir(init.certDir)
    if (material.cert === undefined || material.key === undefined || material.ca === undefined) {
      throw new InvalidCertDirError(`${init.certDir} needs ${CERT_FILE}, ${KEY_FILE} and ${CA_FILE}`)
    }
    return material as TlsMaterial & { ca: string; cert: string; key: string }
  }
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handler(req, res).catch(() => res.destroy())
  }
  if (init.insecure === true) {
    server = createHttpServer(listener)
  } else {
    const tls = await serverTls()
    version = tls.version
    server = createHttpsServer(
      { ca: tls.ca, cert: tls.cert, key: tls.key, requestCert: true, rejectUnauthorized: true },
      listener
    )
  }
  server.headersTimeout = 10_000
  server.requestTimeout = 15_000

  const reloadCertificates = async (): Promise<void> => {
    if (init.insecure === true) return
    const tls = await serverTls()
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
  const watcher =
    init.insecure === true || init.certDir === undefined
      ? undefined
      : watch(init.certDir, { persistent: false }, reload)
  watcher?.on('error', (err) => log.warn({ err }, 'cert dir watcher failed; polling only'))
  const poll = init.insecure === true ? undefined : setInterval(reload, CERT_POLL_MS)
  poll?.unref()

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port ?? 8443, init.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `${init.insecure === true ? 'http' : 'https'}://${host}:${address.port}`

  return {
    url,
    listUrl: `${url}/bootstrap-nodes`,
    nodes: live,
    reloadCertificates,
    async close() {
      watcher?.close()
      clearInterval(poll)
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
