/**
 * One kadmirror node for the end-to-end suite and bench/e2e, in its own process: a ContainerdStore on a
 * containerd socket, a libp2p router on 127.0.0.1, the advertiser and the mirror. Prints JSON lines: first
 * `{ ready: true, url, peerId, addresses }`, then one `{ response: … }` per mirror request and one
 * `{ failure: … }` per peer failure. Stops on SIGTERM.
 *
 * Usage: node test/e2e/kadmirror-node.ts --socket S --content-dir D --data-dir D [--bootstrap ADDR]
 */
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { openContainerdStore } from '@kadmirror/containerd'
import { answerClientError, createMirrorHandler } from '@kadmirror/mirror'
import { createAdvertiser, createLibp2pRouter, staticBootstrapper } from '@kadmirror/routing'

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    'content-dir': { type: 'string' },
    'data-dir': { type: 'string' },
    namespace: { type: 'string', default: 'k8s.io' },
    bootstrap: { type: 'string' }
  }
})
if (values.socket === undefined || values['data-dir'] === undefined) {
  console.error('kadmirror-node: --socket and --data-dir are required')
  process.exit(2)
}
const store = await openContainerdStore({
  address: values.socket,
  namespace: values.namespace,
  ...(values['content-dir'] === undefined ? {} : { contentDir: values['content-dir'] })
})
const server = createServer()
server.on('clientError', answerClientError)
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const port = (server.address() as AddressInfo).port
const router = await createLibp2pRouter({
  listen: ['/ip4/127.0.0.1/tcp/0'],
  allowLoopback: true,
  registryPort: port,
  dataDir: values['data-dir'],
  ...(values.bootstrap === undefined ? {} : { bootstrapper: staticBootstrapper([values.bootstrap]) })
})
const advertiser = createAdvertiser({ store, router })
await advertiser.start()
const handler = createMirrorHandler({ store, router })
handler.events.on('response', (response) => console.log(JSON.stringify({ response })))
handler.events.on('peer-failure', (failure) => console.log(JSON.stringify({ failure })))
server.on('request', handler)
console.log(
  JSON.stringify({
    ready: true,
    url: `http://127.0.0.1:${port}`,
    peerId: router.peerId,
    addresses: router.addresses(),
    readMode: store.readMode
  })
)
process.once('SIGTERM', () => {
  server.closeAllConnections()
  server.close()
  void Promise.all([handler.close(), advertiser.close()])
    .then(() => router.close())
    .then(() => store.close())
    .then(() => process.exit(0))
})
