/**
 * One kadmirror node for bench/mirror, in its own process, built by the daemon's `createNode()`: an OCI
 * image-layout store, a libp2p router on 127.0.0.1, the advertiser and the mirror (no metrics port). Prints one JSON
 * line `{ url, peerId, addresses }` when ready; stops on SIGTERM or when its parent disconnects.
 *
 * Usage: node bench/src/mirror-node.ts --dir DIR [--bootstrap MULTIADDR] [--forward]
 */
import { parseArgs } from 'node:util'
import { createNode } from '@kadmirror/daemon'
import { staticBootstrapper } from '@kadmirror/routing'

const { values } = parseArgs({
  options: { dir: { type: 'string' }, bootstrap: { type: 'string' }, forward: { type: 'boolean' } }
})
if (values.dir === undefined) {
  console.error('mirror-node: --dir is required')
  process.exit(2)
}
const node = await createNode({
  store: { kind: 'oci-layout', directory: values.dir, create: true },
  registry: { host: '127.0.0.1', port: 0 },
  metrics: false,
  // --forward: blobs from peers are forwarded as they arrive instead of verified whole first.
  ...(values.forward === true ? { mirror: { verifyBeforeForwarding: false } } : {}),
  router: {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    ...(values.bootstrap === undefined ? {} : { bootstrapper: staticBootstrapper([values.bootstrap]) })
  }
})
console.log(
  JSON.stringify({ url: node.registryUrl, peerId: node.router.peerId, addresses: node.router.addresses() })
)

const stop = async (): Promise<void> => {
  await node.close()
  process.exit(0)
}
process.once('SIGTERM', () => void stop())
process.once('disconnect', () => void stop())
