/**
 * The metrics port (Spegel's `--metrics-addr`): `GET /metrics` in Prometheus' text format and
 * `GET /debug/web/metadata` (`{"libp2p":{"id":…}}`, as Spegel's debug page serves it); anything else 404.
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Libp2pRouter } from '@kadmirror/routing'
import type { NodeMetrics } from './metrics.ts'

/** Options of {@link startMetricsServer}. */
export interface MetricsServerInit {
  port: number
  host?: string
  metrics: NodeMetrics
  router: Libp2pRouter
}

/** A listening metrics server. */
export interface MetricsServer {
  readonly server: Server
  /** Base URL, such as `http://127.0.0.1:9090`. */
  readonly url: string
  close(): Promise<void>
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

async function route(req: IncomingMessage, res: ServerResponse, init: MetricsServerInit): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://metrics').pathname
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET\n')
  if (path === '/metrics') {
    const registry = init.metrics.registry
    return send(res, 200, registry.contentType, await registry.metrics())
  }
  if (path === '/debug/web/metadata')
    return send(res, 200, 'application/json', JSON.stringify({ libp2p: { id: init.router.peerId } }))
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
