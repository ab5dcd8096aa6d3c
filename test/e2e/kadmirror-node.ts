/**
 * One kadmirror node for the end-to-end suite and bench/e2e, in its own process, built by the daemon's
 * `createNode()`: a ContainerdStore on a containerd socket, a libp2p router on 127.0.0.1, the advertiser and the
 * mirror (no metrics port). Prints JSON lines: first `{ ready: true, url, peerId, addresses, readMode }` once the
 * containerd store is open, then one `{ response: … }` per mirror request, one `{ failure: … }` per peer
 * failure and one `{ upstream: … }` per blob its client was sent upstream for. Stops on SIGTERM.
 *
 * Usage: node test/e2e/kadmirror-node.ts --socket S --content-dir D --data-dir D [--bootstrap ADDR] [--forward]
 */
import { parseArgs } from 'node:util'
import type { ContainerdStore } from '@kadmirror/containerd'
import { createNode, PendingStore } from '@kadmirror/daemon'
import { staticBootstrapper } from '@kadmirror/routing'

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    'content-dir': { type: 'string' },
    'data-dir': { type: 'string' },
    namespace: { type: 'string', default: 'k8s.io' },
    bootstrap: { type: 'string' },
    // Forward blobs from peers as they arrive instead of verifying them whole first (for bench/e2e's comparison).
    forward: { type: 'boolean' }
  }
})
if (values.socket === undefined || values['data-dir'] === undefined) {
  console.error('kadmirror-node: --socket and --data-dir are required')
  process.exit(2)
}
const node = await createNode({
  store: {
    kind: 'containerd',
    address: values.socket,
    namespace: values.namespace,
    ...(values['content-dir'] === undefined ? {} : { contentDir: values['content-dir'] })
  },
  registry: { host: '127.0.0.1', port: 0 },
  metrics: false,
  ...(values.forward === true ? { mirror: { verifyBeforeForwarding: false } } : {}),
  router: {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    dataDir: values['data-dir'],
    ...(values.bootstrap === undefined ? {} : { bootstrapper: staticBootstrapper([values.bootstrap]) })
  }
})
const store = (node.store instanceof PendingStore ? await node.store.opened : node.store) as ContainerdStore
node.mirror.events.on('response', (response) => console.log(JSON.stringify({ response })))
node.mirror.events.on('peer-failure', (failure) => console.log(JSON.stringify({ failure })))
node.mirror.events.on('upstream', (upstream) => console.log(JSON.stringify({ upstream })))
console.log(
  JSON.stringify({
    ready: true,
    url: node.registryUrl,
    peerId: node.router.peerId,
    addresses: node.router.addresses(),
    readMode: store.readMode
  })
)
process.once('SIGTERM', () => {
  void node.close().then(() => process.exit(0))
})
