/**
 * The daemon's other commands, each a function of its resolved options: `configuration` (hosts.toml for
 * containerd), `cleanup` (restore it, then serve `/readyz` until stopped), `cleanup-wait` (probe the cleanup pods
 * until they are all done) and `bootstrap-server` (GEP-0043's external bootstrapper).
 */

import { lookup } from 'node:dns/promises'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { cleanupMirrors, configureMirrors } from '@kadmirror/containerd'
import { createBootstrapServer } from '@kadmirror/routing'
import type { Logger } from 'pino'
import { readCredentials } from './credentials.ts'
import type { OptionValues } from './resolve.ts'
import { parseDuration, parseInteger, parseListenAddress } from './values.ts'

/** Resolves on SIGTERM or SIGINT, with the signal's name. */
export function untilStopped(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'))
    process.once('SIGINT', () => resolve('SIGINT'))
  })
}

/** `kadmirror configuration`: writes hosts.toml for every mirrored registry, backing up what was there. */
export async function runConfiguration(values: OptionValues, log: Logger): Promise<void> {
  const credentials = await readCredentials()
  const configPath = values.text('containerd-registry-config-path') as string
  await configureMirrors({
    configPath,
    registries: values.list('mirrored-registries'),
    mirrorTargets: values.list('mirror-targets'),
    resolveTags: values.flag('resolve-tags'),
    prependExisting: values.flag('prepend-existing'),
    ...(credentials === undefined ? {} : { credentials })
  })
  log.info({ configPath }, 'wrote the mirror configuration')
}

/** Serves `GET /readyz` 200 on `address` until stopped. */
async function serveReady(address: string): Promise<() => Promise<void>> {
  const { host, port } = parseListenAddress(address)
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://probe').pathname
    res.writeHead(req.method === 'GET' && path === '/readyz' ? 200 : 404).end()
  })
  server.listen(port, host === '' ? undefined : host)
  await once(server, 'listening')
  return () => new Promise((resolve) => server.close(() => resolve()))
}

/** `kadmirror cleanup`: restores the configuration found before `configuration`, then serves `/readyz` until stopped. */
export async function runCleanup(values: OptionValues, log: Logger): Promise<void> {
  const configPath = values.text('containerd-registry-config-path') as string
  await cleanupMirrors({ configPath })
  const stop = await serveReady(values.text('addr') as string)
  log.info({ configPath }, 'restored the mirror configuration; waiting to be shut down')
  await untilStopped()
  await stop()
}

/** Whether every address behind `host` answers `GET /readyz` with 200 within a second. */
async function probeAll(host: string, port: string): Promise<boolean> {
  const addresses = await lookup(host, { all: true })
  const results = await Promise.all(
    addresses.map(async ({ address, family }) => {
      const target = family === 6 ? `[${address}]` : address
      const res = await fetch(`http://${target}:${port}/readyz`, { signal: AbortSignal.timeout(1000) }).catch(
        () => undefined
      )
      return res?.status === 200
    })
  )
  return addresses.length > 0 && results.every(Boolean)
}

/** `kadmirror cleanup-wait`: probes the cleanup pods until `threshold` probes in a row all succeed. */
export async function runCleanupWait(values: OptionValues, log: Logger): Promise<void> {
  const endpoint = values.text('probe-endpoint') as string
  const split = endpoint.lastIndexOf(':')
  if (split <= 0) throw new Error(`--probe-endpoint ${endpoint} is not host:port`)
  const host = endpoint.slice(0, split).replace(/^\[|\]$/g, '')
  const port = endpoint.slice(split + 1)
  const threshold = parseInteger(values.text('threshold') as string, 1)
  const periodMs = parseDuration(values.text('period') as string)
  for (let successes = 0; successes < threshold; ) {
    const ok = await probeAll(host, port).catch(() => false)
    successes = ok ? successes + 1 : 0
    log.info({ ok, successes, threshold }, 'cleanup probe')
    if (successes < threshold) await new Promise((resolve) => setTimeout(resolve, periodMs))
  }
  log.info('probe threshold reached')
}

/** `kadmirror bootstrap-server`: the external bootstrapper, until stopped. */
export async function runBootstrapServer(values: OptionValues, log: Logger): Promise<void> {
  const { host, port } = parseListenAddress(values.text('addr') as string)
  const certDir = values.text('cert-dir')
  const server = await createBootstrapServer({
    port,
    ...(host === '' ? {} : { host }),
    ...(certDir === undefined ? {} : { certDir }),
    insecure: values.flag('insecure'),
    nodeTtlMs: parseDuration(values.text('node-ttl') as string),
    logger: log
  })
  log.info({ url: server.listUrl }, 'serving bootstrap nodes')
  await untilStopped()
  await server.close()
}
