/**
 * `kadmirror registry`: turns the resolved options into {@link NodeOptions} (store, listen addresses, bootstrapper,
 * mirror settings, credentials), starts the node, serves `/id` when asked, and stops on SIGTERM or SIGINT.
 */

import { once } from 'node:events'
import { readFile, stat } from 'node:fs/promises'
import { createServer } from 'node:http'
import { join } from 'node:path'
import {
  type Bootstrapper,
  dnsBootstrapper,
  httpBootstrapper,
  idHandler,
  type Libp2pRouter,
  parsePrivateNetworkKey,
  staticBootstrapper
} from '@kadmirror/routing'
import type { Logger } from 'pino'
import { untilStopped } from './commands.ts'
import { readCredentials } from './credentials.ts'
import { collectAfterBursts } from './idle-collect.ts'
import { createNode, type KadmirrorNode, type NodeOptions, type StoreOption } from './node.ts'
import { parseStore } from './options.ts'
import { type OptionValues, UsageError } from './resolve.ts'
import { fullGarbageCollection } from './runtime.ts'
import {
  type ListenAddress,
  parseByteSize,
  parseDuration,
  parseInteger,
  parseListenAddress,
  parseRegex
} from './values.ts'

/** Libp2p listen multiaddrs for a Go listen address (`:5001` → all IPv4 and IPv6 interfaces). */
export function routerListen(address: ListenAddress): string[] {
  if (address.host === '') return [`/ip4/0.0.0.0/tcp/${address.port}`, `/ip6/::/tcp/${address.port}`]
  const family = address.host.includes(':') ? 'ip6' : 'ip4'
  return [`/${family}/${address.host}/tcp/${address.port}`]
}

/** The bootstrapper `--bootstrap-kind` names, with its required options. @throws {UsageError} */
export function bootstrapperOf(values: OptionValues, routerPort: number, log: Logger): Bootstrapper {
  switch (values.text('bootstrap-kind')) {
    case 'dns': {
      const name = values.text('dns-bootstrap-domain')
      if (name === undefined) throw new UsageError('--bootstrap-kind=dns needs --dns-bootstrap-domain')
      return dnsBootstrapper({ name, port: routerPort })
    }
    case 'static': {
      const peers = values.list('static-bootstrap-peers')
      if (peers.length === 0) throw new UsageError('--bootstrap-kind=static needs --static-bootstrap-peers')
      try {
        return staticBootstrapper(peers)
      } catch (err) {
        throw new UsageError(`invalid value for --static-bootstrap-peers: ${(err as Error).message}`)
      }
    }
    default: {
      const url = values.text('http-bootstrap-url') ?? values.text('http-bootstrap-peer')
      if (url === undefined)
        throw new UsageError('--bootstrap-kind=http needs --http-bootstrap-url (or --http-bootstrap-peer)')
      const certDir = values.text('http-bootstrap-cert-dir')
      return httpBootstrapper({ url, routerPort, logger: log, ...(certDir === undefined ? {} : { certDir }) })
    }
  }
}

/** The store `--store` names; an OCI layout directory must exist (nothing is created where it should not be). */
async function storeOf(values: OptionValues): Promise<StoreOption> {
  const store = parseStore(values.text('store') ?? 'containerd')
  if (store.kind === 'oci-layout') {
    const info = await stat(store.directory).catch(() => undefined)
    if (info === undefined) throw new UsageError(`--store: ${store.directory} does not exist`)
    if (!info.isDirectory()) throw new UsageError(`--store: ${store.directory} is not a directory`)
    return { kind: 'oci-layout', directory: store.directory, create: true }
  }
  const contentDir = values.text('containerd-content-path')
  return {
    kind: 'containerd',
    ...(values.text('containerd-sock') === undefined
      ? {}
      : { address: values.text('containerd-sock') as string }),
    ...(values.text('containerd-namespace') === undefined
      ? {}
      : { namespace: values.text('containerd-namespace') as string }),
    ...(contentDir === undefined ? {} : { contentDir })
  }
}

/** The `?ns=` values of `--mirrored-registries` (`https://docker.io` → `docker.io`). */
function mirroredHosts(values: OptionValues): string[] {
  return values.list('mirrored-registries').map((registry) => new URL(registry).host)
}

/** The private-network key in `file`, checked. @throws {UsageError} when unreadable or not a swarm key. */
async function privateNetworkKeyOf(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new UsageError(`--private-network-key-file: cannot read ${file}: ${err.message}`)
  })
  try {
    parsePrivateNetworkKey(text)
  } catch (err) {
    throw new UsageError(`--private-network-key-file: ${file}: ${(err as Error).message}`)
  }
  return text
}

/** A data dir that exists must be a writable directory; one that does not is created by the router. */
async function checkDataDir(dir: string | undefined): Promise<void> {
  if (dir === undefined) return
  const info = await stat(dir).catch(() => undefined)
  if (info !== undefined && !info.isDirectory()) throw new UsageError(`--data-dir: ${dir} is not a directory`)
}

/** The node options of `kadmirror registry`. @throws {UsageError} */
export async function registryNodeOptions(values: OptionValues, log: Logger): Promise<NodeOptions> {
  const registry = parseListenAddress(values.text('registry-addr') ?? ':5000')
  const router = parseListenAddress(values.text('router-addr') ?? ':5001')
  const metrics = parseListenAddress(values.text('metrics-addr') ?? ':9090')
  const dataDir = values.text('data-dir')
  await checkDataDir(dataDir)
  const credentials = await readCredentials()
  const registries = mirroredHosts(values)
  const privateNetworkKey = await privateNetworkKeyOf(values.text('private-network-key-file'))
  const routerNetworks = values.list('router-allowed-networks')
  const registryNetworks = values.list('registry-allowed-networks')
  const quorum = values.text('tag-quorum') ?? 'auto'
  const hashThreads = values.text('hash-threads') ?? 'auto'
  return {
    store: await storeOf(values),
    registry: {
      host: registry.host,
      port: registry.port,
      ...(registryNetworks.length === 0 ? {} : { allowedNetworks: registryNetworks })
    },
    router: {
      listen: routerListen(router),
      bootstrapper: bootstrapperOf(values, router.port, log),
      allowLoopback: values.flag('allow-loopback'),
      membership: values.text('membership') === 'gossip' ? 'gossip' : 'mesh',
      peerConnections: parseInteger(values.text('peer-connections') ?? '64', 8, 10_000),
      datagramLookups: values.flag('datagram-lookups'),
      ...(dataDir === undefined ? {} : { dataDir }),
      ...(privateNetworkKey === undefined ? {} : { privateNetworkKey }),
      ...(routerNetworks.length === 0 ? {} : { allowedNetworks: routerNetworks })
    },
    mirror: {
      verifyBeforeForwarding: values.flag('verify-before-forwarding'),
      // Spooled blobs go to disk under the data dir (the temporary directory may be tmpfs, which is memory).
      ...(dataDir === undefined ? {} : { spoolDir: join(dataDir, 'spool') }),
      hashThreads: hashThreads === 'auto' ? 0 : parseInteger(hashThreads, 0, 16),
      multiPeerThresholdBytes: parseByteSize(values.text('multi-peer-threshold') ?? '32MiB'),
      pieceBytes: parseByteSize(values.text('piece-size') ?? '8MiB'),
      maxPieceProviders: parseInteger(values.text('max-piece-providers') ?? '4', 1, 64),
      maxPeerUploads: parseInteger(values.text('max-peer-uploads') ?? '32'),
      busyWaitMs: parseDuration(values.text('busy-wait') ?? '5s'),
      tagQuorum:
        quorum !== 'auto'
          ? parseInteger(quorum, 1, 100)
          : privateNetworkKey !== undefined || values.flag('allow-loopback')
            ? 1
            : 2,
      resolveTimeoutMs: parseDuration(values.text('mirror-resolve-timeout') ?? '20ms'),
      resolveRetries: parseInteger(values.text('mirror-resolve-retries') ?? '3'),
      filters: values.list('registry-filters').map(parseRegex),
      ...(registries.length === 0 ? {} : { registries }),
      ...(credentials === undefined ? {} : { credentials })
    },
    flashCrowd: values.flag('flash-crowd')
      ? { waitMs: parseDuration(values.text('flash-crowd-wait') ?? '1500ms') }
      : false,
    metrics: { host: metrics.host, port: metrics.port },
    debugWeb: values.flag('debug-web-enabled'),
    libp2pMetrics: values.flag('libp2p-metrics'),
    shutdownGraceMs: parseDuration(values.text('shutdown-grace') ?? '10s'),
    logger: log
  }
}

/** Serves the node's own Spegel-compatible `GET /id` on `--http-bootstrap-addr`; returns a function that stops it. */
async function serveId(address: string | undefined, router: Libp2pRouter): Promise<() => Promise<void>> {
  if (address === undefined) return async () => {}
  const { host, port } = parseListenAddress(address)
  const handle = idHandler(router)
  const server = createServer((req, res) => {
    if (new URL(req.url ?? '/', 'http://id').pathname === '/id') handle(req, res)
    else res.writeHead(404).end()
  })
  server.listen(port, host === '' ? undefined : host)
  await once(server, 'listening')
  return () => new Promise((resolve) => server.close(() => resolve()))
}

/** Runs the node until SIGTERM or SIGINT; resolves when it has stopped. */
export async function runRegistry(values: OptionValues, log: Logger): Promise<void> {
  const node: KadmirrorNode = await createNode(await registryNodeOptions(values, log))
  const collector = collectAfterBursts({ mirror: node.mirror, collect: fullGarbageCollection(), log })
  // Starting is a burst too: what loading, bootstrapping and the first advertisement left is collected once quiet.
  collector.burst()
  let stopId: () => Promise<void>
  try {
    stopId = await serveId(values.text('http-bootstrap-addr'), node.router)
  } catch (err) {
    collector.stop()
    await node.close()
    throw err
  }
  const signal = await untilStopped()
  log.info({ signal }, 'shutting down')
  collector.stop()
  await stopId()
  await node.close()
  log.info('exit gracefully')
}
