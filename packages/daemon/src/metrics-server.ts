/**
 * The metrics port (Spegel's `--metrics-addr`): `GET /metrics` in Prometheus' text format,
 * `GET /debug/web/metadata` (`{"libp2p":{"id":…}}`, as Spegel's debug page serves it), and, when enabled, the debug
 * page at `/debug/web/` with its `api/status` and `api/measure`. Anything else 404.
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Libp2pRouter } from '@kadmirror/routing'
import { DEBUG_REQUEST_MAX_BYTES } from './constants.ts'
import { DEBUG_PAGE } from './debug-page.ts'
import type { DebugState } from './debug-state.ts'
import { InvalidMeasureError, type Measurement } from './measure.ts'
import type { NodeMetrics } from './metrics.ts'

/** The debug page's sources. */
export interface DebugWeb {
  state: DebugState
  measure(image: string): Promise<Measurement>
}

/** Options of {@link startMetricsServer}. */
export interface MetricsServerInit {
  port: number
  host?: string
  metrics: NodeMetrics
  router: Libp2pRouter
  /** The debug page; none when undefined (Spegel's `--debug-web-enabled=false`). */
  debug?: DebugWeb
}

/** A listening metrics server. */
export interface MetricsServer {
  readonly server: Server
  /** Base URL, such as `http://127.0.0.1:9090`. */
  readonly url: string
  close(): Promise<void>
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store'
  })
  res.end(body)
}

const json = (res: ServerResponse, status: number, value: unknown): void =>
  send(res, status, 'application/json', JSON.stringify(value))

/** Reads a small JSON body. @throws {InvalidMeasureError} when it is too large or not JSON. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength
    if (size > DEBUG_REQUEST_MAX_BYTES)
      throw new InvalidMeasureError(`the request is over ${DEBUG_REQUEST_MAX_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new InvalidMeasureError('the request is not JSON')
  }
}

async function measureRequest(req: IncomingMessage, res: ServerResponse, debug: DebugWeb): Promise<void> {
  try {
    const body = (await readJson(req)) as { image?: unknown }
    if (typeof body?.image !== 'string' || body.image.trim() === '')
      throw new InvalidMeasureError('name an image, such as docker.io/library/nginx:1.27')
    json(res, 200, await debug.measure(body.image.trim()))
  } catch (err) {
    if (err instanceof InvalidMeasureError) return json(res, 400, { error: err.message })
    throw err
  }
}

async function debugRoute(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  debug: DebugWeb
): Promise<void> {
  if (path === '/debug/web') {
    res.writeHead(301, { location: '/debug/web/' }).end()
    return
  }
  if (path === '/debug/web/' && req.method !== 'POST')
    return send(res, 200, 'text/html; charset=utf-8', DEBUG_PAGE)
  if (path === '/debug/web/api/status' && req.method !== 'POST')
    return json(res, 200, await debug.state.status())
  if (path === '/debug/web/api/measure') {
    if (req.method !== 'POST') return json(res, 405, { error: 'POST a JSON body {"image": "…"}' })
    return measureRequest(req, res, debug)
  }
  json(res, 404, { error: 'not found' })
}

async function route(req: IncomingMessage, res: ServerResponse, init: MetricsServerInit): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://metrics').pathname
  const method = req.method ?? 'GET'
  if (path === '/debug/web/api/measure' && init.debug !== undefined)
    return debugRoute(req, res, path, init.debug)
  if (method !== 'GET' && method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET\n')
  if (path === '/metrics')
    return send(res, 200, init.metrics.registry.contentType, await init.metrics.registry.metrics())
  if (path === '/debug/web/metadata') return json(res, 200, { libp2p: { id: init.router.peerId } })
  if ((path === '/debug/web' || path.startsWith('/debug/web/')) && init.debug !== undefined)
    return debugRoute(req, res, path, init.debug)
  send(res, 404, 'text/plain', 'not found\n')
}

/** Starts the metrics server. @throws when the port cannot be bound (`EADDRINUSE`). */
export async function startMetricsServer(init: MetricsServerInit): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    route(req, res, init).catch(() => {
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n')
      else res.destroy()
    })
  })
  server.listen(init.port, init.host)
  await once(server, 'listening') // rejects with the listen error (EADDRINUSE)
  const address = server.address() as AddressInfo
  const wildcard = init.host === undefined || init.host === '::' || init.host === '0.0.0.0'
  const host = wildcard ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    server,
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}
