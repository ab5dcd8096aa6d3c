/**
 * One kadmirror node for bench/mirror, in its own process: an OCI image-layout store, a libp2p router on
 * 127.0.0.1, the advertiser and the mirror server. Prints one JSON line `{ url, peerId, addresses }` when
 * ready; stops on SIGTERM or when its parent disconnects.
 *
 * Usage: node bench/src/mirror-node.ts --dir DIR [--bootstrap MULTIADDR]
 */
import { parseArgs } from 'node:util'
import { listenMirror } from '@kadmirror/mirror'
import { createAdvertiser, createLibp2pRouter, staticBootstrapper } from '@kadmirror/routing'
import { openOciLayoutStore } from '@kadmirror/store'

const { values } = parseArgs({ options: { dir: { type: 'string' }, bootstrap: { type: 'string' } } })
if (values.dir === undefined) {
  console.error('mirror-node: --dir is required')
  process.exit(2)
}
const store = await openOciLayoutStore({ directory: values.dir, create: true })
// The mirror listens first: the router announces its port to peers; the handler is served once the router exists.
const listener = await listenMirror({ port: 0, host: '127.0.0.1' })
const router = await createLibp2pRouter({
  listen: ['/ip4/127.0.0.1/tcp/0'],
  allowLoopback: true,
  registryPort: listener.port,
  ...(values.bootstrap === undefined ? {} : { bootstrapper: staticBootstrapper([values.bootstrap]) })
})
const advertiser = createAdvertiser({ store, router })
await advertiser.start()
listener.serve({ store, router })
console.log(JSON.stringify({ url: listener.url, peerId: router.peerId, addresses: router.addresses() }))

const stop = async (): Promise<void> => {
  await listener.close()
  await advertiser.close()
  await router.close()
  await store.close()
  process.exit(0)
}
process.once('SIGTERM', () => void stop())
process.once('disconnect', () => void stop())
