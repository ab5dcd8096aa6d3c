/**
 * A TCP proxy whose answers (target → client) share one rate limit over all connections: a slow upstream registry on
 * loopback, where `tc` cannot shape one port. Requests (client → target) pass unthrottled.
 */
import { once } from 'node:events'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'

/** A running proxy. */
export interface ThrottleProxy {
  /** `127.0.0.1:<port>`. */
  host: string
  stop(): Promise<void>
}

/** Proxies 127.0.0.1:<free port> to `target` (`host:port`), sending at most `bytesPerSecond` to all clients together. */
export async function startThrottleProxy(target: string, bytesPerSecond: number): Promise<ThrottleProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string]
  const sockets = new Set<Socket>()
  let freeAt = 0
  const server = createServer((client) => {
    const upstream = connect(Number(targetPort), targetHost)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    client.once('end', () => upstream.end())
    upstream.once('end', () => client.end())
    upstream.on('data', (chunk: Buffer) => {
      const now = performance.now()
      freeAt = Math.max(freeAt, now) + (chunk.byteLength / bytesPerSecond) * 1000
      upstream.pause()
      setTimeout(() => {
        if (client.destroyed) return
        client.write(chunk)
        upstream.resume()
      }, freeAt - now)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    async stop() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}
