/**
 * One kadmirror node for the end-to-end suite and bench/e2e, in its own process: a ContainerdStore on a
 * containerd socket, a libp2p router on 127.0.0.1, the advertiser and the mirror. Prints JSON lines: first
 * `{ ready: true, url, peerId, addresses }`, then one `{ response: … }` per mirror request and one
 * `{ failure: … }` per peer failure. Stops on SIGTERM.
 *
 * Usage: node test/e2e/kadmirror-node.ts --socket S --content-dir D --data-dir D [--bootstrap ADDR]
 */
import { parseArgs } from 'node:util'
import { openContainerdStore } from '@kadmirror/containerd'
import { listenMirror } from '@kadmirror/mirror'
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
// The mirror listens first: the router announces its port to peers; the handler is served once the router exists.
const listener = await listenMirror({ port: 0, host: '127.0.0.1' })
const router = await createLibp2pRouter({
  listen: ['/ip4/127.0.0.1/tcp/0'],
  allowLoopback: true,
  registryPort: listener.port,
  dataDir: values['data-dir'],
  ...(values.bootstrap === undefined ? {} : { bootstrapper: staticBootstrapper([values.bootstrap]) })
})
const advertiser = createAdvertiser({ store, router })
await advertiser.start()
const handler = listener.serve({ store, router })
handler.events.on('response', (response) => console.log(JSON.stringify({ response })))
handler.events.on('peer-failure', (failure) => console.log(JSON.stringify({ failure })))
console.log(
  JSON.stringify({
    ready: true,
    url: listener.url,
    peerId: router.peerId,
    addresses: router.addresses(),
    readMode: store.readMode
  })
)
process.once('SIGTERM', () => {
  void Promise.all([listener.close(), advertiser.close()])
    .then(() => router.close())
    .then(() => store.close())
    .then(() => process.exit(0))
})
