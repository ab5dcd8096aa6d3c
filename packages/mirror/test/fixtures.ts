// Test nodes: a store, a router and a real HTTP mirror on 127.0.0.1; fake peers that misbehave on purpose.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { BuiltImage, Digest } from '@kadmirror/oci'
import {
  createLibp2pRouter,
  type Libp2pRouter,
  type MemoryNetwork,
  type Router,
  staticBootstrapper
} from '@kadmirror/routing'
import { createMemoryStore, type MemoryStore } from '@kadmirror/store'
import { Agent } from 'undici'
import { createMirrorHandler, type MirrorHandler, type MirrorHandlerInit } from '../src/index.ts'

export { waitFor } from '@kadmirror/test-support'

/** One node: its store, router, and mirror at `url`. */
export interface MirrorNode {
  store: MemoryStore
  router: Router
  handler: MirrorHandler
  server: Server
  url: string
  close(): Promise<void>
}

type HandlerOptions = Omit<MirrorHandlerInit, 'store' | 'router'>

/** Listens on `host` (127.0.0.1; any 127.x address works on Linux) with an ephemeral port. */
export async function listen(
  handler?: (req: IncomingMessage, res: ServerResponse) => void,
  host = '127.0.0.1'
): Promise<Server> {
  const server = createServer(handler)
  server.listen(0, host)
  await once(server, 'listening')
  return server
}

/** Base URL of a listening server. */
export function urlOf(server: Server): string {
  const { address, port } = server.address() as AddressInfo
  return `http://${address}:${port}`
}

/** Stops a server and every connection it has. */
export async function stopServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeAllConnections()
  await closed
}

async function assemble(server: Server, router: Router, options: HandlerOptions): Promise<MirrorNode> {
  const store = createMemoryStore()
  // The lookup's order unless a test asks otherwise: tests name which peer is asked first.
  const handler = createMirrorHandler({ store, router, providerOrder: 'lookup', ...options })
  server.on('request', handler)
  return {
    store,
    router,
    handler,
    server,
    url: urlOf(server),
    async close() {
      await stopServer(server)
      await handler.close()
      await router.close()
      await store.close()
    }
  }
}

/** Adds `image` to `node`'s store as `reference` and advertises every key the store then holds. */
export async function holdImage(node: MirrorNode, reference: string, image: BuiltImage): Promise<void> {
  await node.store.addImage(reference, image)
  const keys: string[] = []
  for await (const key of node.store.keys()) keys.push(key.key)
  await node.router.advertise(keys)
}

/** A node on an in-memory network (deterministic provider order: the order peers advertised). */
export async function startMemoryNode(
  network: MemoryNetwork,
  options: HandlerOptions = {}
): Promise<MirrorNode> {
  const server = await listen()
  return assemble(server, network.createRouter({ registryUrl: urlOf(server) }), options)
}

/** A node with a real libp2p router on 127.0.0.1, bootstrapping from `seed` when given. */
export async function startLibp2pNode(
  seed?: Libp2pRouter,
  options: HandlerOptions = {}
): Promise<MirrorNode> {
  const server = await listen()
  const router = await createLibp2pRouter({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    registryPort: (server.address() as AddressInfo).port,
    ...(seed === undefined
      ? {}
      : { bootstrapper: staticBootstrapper(seed.addresses().map((a) => `${a}/p2p/${seed.peerId}`)) })
  })
  return assemble(server, router, options)
}

/** A peer whose mirror is `behaviour`, advertising `keys` on `network`. */
export interface FakePeer {
  server: Server
  router: Router
  /** Requests it received, in order. */
  requests: { method: string; url: string; headers: IncomingMessage['headers'] }[]
  close(): Promise<void>
}

/** Starts a fake peer: a real HTTP server with the given behaviour, advertising `keys`. */
export async function startFakePeer(
  network: MemoryNetwork,
  keys: readonly string[],
  behaviour: (req: IncomingMessage, res: ServerResponse) => void,
  host = '127.0.0.1'
): Promise<FakePeer> {
  const requests: FakePeer['requests'] = []
  const server = await listen((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    behaviour(req, res)
  }, host)
  const router = network.createRouter({ registryUrl: urlOf(server) })
  await router.advertise(keys)
  return {
    server,
    router,
    requests,
    async close() {
      await stopServer(server)
      await router.close()
    }
  }
}

/** Serves `bytes` as a blob (whole, or the range asked for), as a good peer does. */
export function serveBytes(bytes: Uint8Array, digest: Digest, contentType = 'application/octet-stream') {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const match = /^bytes=([0-9]+)-$/.exec(req.headers.range ?? '')
    const start = match === null ? 0 : Number(match[1])
    const headers: Record<string, string | number> = {
      'content-type': contentType,
      'docker-content-digest': digest,
      'content-length': bytes.byteLength - start
    }
    if (match !== null)
      headers['content-range'] = `bytes ${start}-${bytes.byteLength - 1}/${bytes.byteLength}`
    res.writeHead(match === null ? 200 : 206, headers)
    res.end(req.method === 'HEAD' ? undefined : Buffer.from(bytes.subarray(start)))
  }
}

/** A client response with the whole body read; `error` is set when the body was cut. */
export interface ClientResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  error?: Error
}

const client = new Agent({ keepAliveTimeout: 1000 })

/** Sends a request to a mirror and reads the whole answer. */
export async function get(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE' | 'PATCH' = 'GET'
): Promise<ClientResponse> {
  // The raw path goes on the wire as given (a URL object would resolve `..` before sending).
  const response = await client.request({ origin: base, path, method, headers })
  const chunks: Buffer[] = []
  try {
    for await (const chunk of response.body as AsyncIterable<Buffer>) chunks.push(chunk)
    return { status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }
  } catch (err) {
    return {
      status: response.statusCode,
      headers: response.headers,
      body: Buffer.concat(chunks),
      error: err as Error
    }
  }
}

/** The OCI error code of an error body. */
export function errorCode(response: ClientResponse): string | undefined {
  const parsed = JSON.parse(response.body.toString('utf8')) as { errors?: { code?: string }[] }
  return parsed.errors?.[0]?.code
}

/** Deterministic pseudo-random bytes (a blob no one compresses away). */
export function randomBytes(size: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

/** The `[start, end)` a `Range: bytes=a-b` or `bytes=a-` header asks of a blob of `size` bytes; undefined: none. */
export function rangeOf(
  header: string | undefined,
  size: number
): { start: number; end: number } | undefined {
  const match = /^bytes=([0-9]+)-([0-9]*)$/.exec(header ?? '')
  if (match === null) return undefined
  const end = match[2] === '' ? size : Math.min(size, Number(match[2]) + 1)
  return { start: Number(match[1]), end }
}

/**
 * Serves `bytes` as a good peer does, closed ranges included (`bytes=a-b`), passing the bytes it sends through
 * `shape` (to corrupt them, or slow them down) — `shape` gets the answer's start and resolves when it wrote them.
 */
export function serveRanges(
  bytes: Uint8Array,
  digest: Digest,
  shape: (res: ServerResponse, body: Buffer, start: number) => void = (res, body) => res.end(body)
) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const range = rangeOf(req.headers.range, bytes.byteLength)
    const { start, end } = range ?? { start: 0, end: bytes.byteLength }
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest,
      'content-length': end - start
    }
    if (range !== undefined) headers['content-range'] = `bytes ${start}-${end - 1}/${bytes.byteLength}`
    res.writeHead(range === undefined ? 200 : 206, headers)
    if (req.method === 'HEAD') return void res.end()
    shape(res, Buffer.from(bytes.subarray(start, end)), start)
  }
}

/** Writes `body` in `chunkBytes` chunks, `delayMs` apart (a peer with a slow uplink); stops when the client left. */
export function throttled(chunkBytes: number, delayMs: number) {
  return (res: ServerResponse, body: Buffer): void => {
    let at = 0
    const next = (): void => {
      if (res.destroyed) return
      if (at >= body.byteLength) return void res.end()
      res.write(body.subarray(at, at + chunkBytes))
      at += chunkBytes
      setTimeout(next, delayMs)
    }
    next()
  }
}
