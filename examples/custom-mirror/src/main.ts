/**
 * A custom mirror daemon embedding `@kadmirror/mirror`: an OCI image-layout directory as the store, a libp2p
 * router on the Spegel-compatible DHT, the advertiser, and the mirror handler mounted in node:http, express or
 * fastify. Runs until SIGINT or SIGTERM.
 *
 * Usage:
 *   node examples/custom-mirror/src/main.ts --store DIR [--framework http|express|fastify] [--port 5000]
 *     [--router-port 5001] [--bootstrap /ip4/10.0.0.2/tcp/5001/p2p/12D3Koo…]… [--loopback]
 */
import { once } from 'node:events'
import { createServer, type RequestListener } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { answerClientError, createMirrorHandler } from '@kadmirror/mirror'
import { createAdvertiser, createLibp2pRouter, staticBootstrapper } from '@kadmirror/routing'
import { openOciLayoutStore } from '@kadmirror/store'
import { pino } from 'pino'
import { expressApp, fastifyApp } from './frameworks.ts'

function fail(message: string): never {
  console.error(`custom-mirror: ${message}`)
  process.exit(2)
}

let values: Record<string, string | boolean | string[] | undefined>
try {
  ;({ values } = parseArgs({
    options: {
      store: { type: 'string' },
      framework: { type: 'string', default: 'http' },
      port: { type: 'string', default: '5000' },
      'router-port': { type: 'string', default: '5001' },
      bootstrap: { type: 'string', multiple: true, default: [] },
      loopback: { type: 'boolean', default: false }
    }
  }))
} catch (err) {
  fail((err as Error).message)
}
const port = Number(values.port)
const routerPort = Number(values['router-port'])
const framework = values.framework as string
if (typeof values.store !== 'string') fail('--store DIR is required (an OCI image-layout directory)')
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be a TCP port, got ${values.port}`)
if (!Number.isInteger(routerPort) || routerPort < 0 || routerPort > 65535) {
  fail(`--router-port must be a TCP port, got ${values['router-port']}`)
}
if (!['http', 'express', 'fastify'].includes(framework))
  fail(`--framework must be http, express or fastify, got ${framework}`)

const logger = pino({ name: 'custom-mirror' })
const store = await openOciLayoutStore({ directory: values.store, create: true })
const host = values.loopback === true ? '127.0.0.1' : '0.0.0.0'
// The server listens first: the router announces the mirror's port to its peers.
const server = createServer()
server.on('clientError', answerClientError)
server.listen(port, host)
await once(server, 'listening')
const registryPort = (server.address() as AddressInfo).port
const router = await createLibp2pRouter({
  listen: [`/ip4/${host}/tcp/${routerPort}`],
  allowLoopback: values.loopback === true,
  registryPort,
  logger,
  ...((values.bootstrap as string[]).length > 0
    ? { bootstrapper: staticBootstrapper(values.bootstrap as string[]) }
    : {})
})
const advertiser = createAdvertiser({ store, router, logger })
await advertiser.start()
const handler = createMirrorHandler({ store, router, logger })
handler.events.on('response', (e) => logger.info(e, 'request'))

let listener: RequestListener
if (framework === 'express') listener = expressApp(handler)
else if (framework === 'fastify') {
  const app = fastifyApp(handler)
  await app.ready()
  listener = (req, res) => app.routing(req, res)
} else listener = handler
server.on('request', listener)
logger.info(
  {
    framework,
    registry: `http://${host}:${registryPort}`,
    peerId: router.peerId,
    addresses: router.addresses()
  },
  'mirror ready'
)

const stop = async (): Promise<void> => {
  server.closeAllConnections()
  server.close()
  await handler.close()
  await advertiser.close()
  await router.close()
  await store.close()
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed')
        process.exit(1)
      }
    )
  })
}
