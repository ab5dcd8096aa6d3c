/**
 * A misbehaving peer's registry mirror for tests and benchmarks: it answers every blob it is told of with the right
 * size and digest header, and a body of the caller's choosing (zeros, a trickle…). The caller advertises the digests
 * on a router with the port it listens on.
 */
import { once } from 'node:events'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A listening rogue registry. */
export interface RogueRegistry {
  server: Server
  port: number
  /** Blob GETs answered so far. */
  served(): number
  close(): Promise<void>
}

/** Zeros of the blob's size: bytes that never match the digest. */
export const zeros = (res: ServerResponse, size: number): void => void res.end(Buffer.alloc(size))

/** Starts a rogue registry on 127.0.0.1 for the blobs of `sizes` (digest → size in bytes), bodies from `serve`. */
export async function startRogueRegistry(
  sizes: ReadonlyMap<string, number>,
  serve: (res: ServerResponse, size: number) => void = zeros
): Promise<RogueRegistry> {
  let served = 0
  const server = createServer((req, res) => {
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '')?.[1] ?? ''
    const size = sizes.get(digest)
    if (size === undefined) return void res.writeHead(404).end()
    res.writeHead(200, { 'content-length': size, 'docker-content-digest': digest })
    if (req.method === 'HEAD') return void res.end()
    served++
    serve(res, size)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    server,
    port: (server.address() as AddressInfo).port,
    served: () => served,
    async close() {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}
