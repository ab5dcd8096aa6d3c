/**
 * A reference for bench/mirror: the simplest Node proxy (undici `stream` piping a peer's answer to the client,
 * no lookup and no verification), to show what any Node hop costs on the machine. Prints one JSON line
 * `{ url }` when ready; stops on SIGTERM or when its parent disconnects.
 *
 * Usage: node bench/src/pipe-proxy.ts --upstream http://127.0.0.1:PORT
 */
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { Agent } from 'undici'

const { values } = parseArgs({ options: { upstream: { type: 'string' } } })
if (values.upstream === undefined) {
  console.error('pipe-proxy: --upstream is required')
  process.exit(2)
}
const upstream = new URL(values.upstream)
const dispatcher = new Agent()
const server = createServer(async (req, res) => {
  try {
    await dispatcher.stream(
      { origin: upstream.origin, path: req.url ?? '/', method: 'GET' },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, { 'content-length': String(headers['content-length'] ?? 0) })
        return res
      }
    )
  } catch {
    res.destroy()
  }
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')
console.log(JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }))
const stop = (): void => {
  server.closeAllConnections()
  server.close()
  void dispatcher.close().then(() => process.exit(0))
}
process.once('SIGTERM', stop)
process.once('disconnect', stop)
