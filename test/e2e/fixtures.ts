// End-to-end parts on 127.0.0.1: an upstream registry (Debian's docker-registry), images built without internet
// (umoci) and pushed (skopeo), containerd instances, and kadmirror node processes.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { PeerFailureEvent, ResponseEvent, UpstreamEvent } from '@kadmirror/mirror'
import { buildImage, buildIndex } from '@kadmirror/oci'
import { createLibp2pRouter, staticBootstrapper } from '@kadmirror/routing'
import { openOciLayoutStore } from '@kadmirror/store'
import { waitFor } from '@kadmirror/test-support'
import { buildContainerd2 } from '@kadmirror/test-support/go-builds'
import { startRogueRegistry } from '@kadmirror/test-support/rogue-registry'
import {
  type ContainerdBinaries,
  type ContainerdProcess,
  containerdUnavailable,
  startContainerd
} from '../../packages/containerd/test/containerd-process.ts'

export const run = promisify(execFile)
const TOOLS = {
  'docker-registry': '/usr/bin/docker-registry',
  umoci: '/usr/bin/umoci',
  skopeo: '/usr/bin/skopeo',
  tar: '/usr/bin/tar'
}

/** Why the end-to-end suite cannot run here, or undefined. */
export function e2eUnavailable(): string | undefined {
  const containerd = containerdUnavailable()
  if (containerd !== undefined) return containerd
  for (const [name, path] of Object.entries(TOOLS)) {
    if (!existsSync(path)) return `${name} is not installed (apt-get install docker-registry umoci skopeo)`
  }
  return undefined
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** The upstream registry; `requests` holds the request lines of its access log (`GET /v2/…`). */
export interface Registry {
  host: string
  requests: string[]
  stop(): Promise<void>
  start(): Promise<void>
}

/** Writes a docker-registry config serving `storage` on `addr` (host:port), with its access log on. */
export async function writeRegistryConfig(path: string, storage: string, addr: string): Promise<void> {
  await writeFile(
    path,
    `version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
http:
  addr: ${addr}
`
  )
}

/** Appends the request lines (`GET /v2/…`) of a docker-registry's access log, as it writes them, to `requests`. */
export function collectAccessLog(child: ChildProcess, requests: string[]): void {
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream as NonNullable<typeof stream> }).on('line', (line) => {
      // Access log lines: 127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 …
      const match = /"((?:GET|HEAD) [^ ]+) HTTP/.exec(line)
      if (match !== null) requests.push(match[1] as string)
    })
  }
}

/** Starts docker-registry on 127.0.0.1 with its storage in `dir`. */
export async function startRegistry(dir: string): Promise<Registry> {
  const port = await freePort()
  const config = join(dir, 'registry.yml')
  await writeRegistryConfig(config, join(dir, 'storage'), `127.0.0.1:${port}`)
  const requests: string[] = []
  let child: ChildProcess | undefined
  const host = `127.0.0.1:${port}`
  const start = async (): Promise<void> => {
    child = spawn(TOOLS['docker-registry'], ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] })
    collectAccessLog(child, requests)
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        const res = await fetch(`http://${host}/v2/`)
        if (res.ok) return
      } catch {}
      if (Date.now() > deadline) throw new Error('docker-registry did not start')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  await start()
  return {
    host,
    requests,
    start,
    async stop() {
      if (child === undefined || child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  }
}

async function randomFile(path: string, bytes: number): Promise<void> {
  const file = await open(path, 'w')
  const chunk = Buffer.alloc(1024 * 1024)
  for (let written = 0; written < bytes; written += chunk.length) {
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i)
    await file.write(chunk, 0, Math.min(chunk.length, bytes - written))
  }
  await file.close()
}

/**
 * Builds an image with umoci, one layer per entry of `layerBytes` (files of random bytes), and pushes it to
 * `registry` as `repository:tag` with skopeo. Resolves the manifest digest.
 */
export async function buildAndPush(
  work: string,
  registry: string,
  repository: string,
  tag: string,
  layerBytes: number[]
): Promise<string> {
  const layout = join(work, `${repository.replaceAll('/', '-')}-${tag}`)
  const bundle = `${layout}-bundle`
  await run(TOOLS.umoci, ['init', '--layout', layout])
  await run(TOOLS.umoci, ['new', '--image', `${layout}:${tag}`])
  for (const [i, bytes] of layerBytes.entries()) {
    await run(TOOLS.umoci, ['unpack', '--image', `${layout}:${tag}`, bundle])
    await randomFile(join(bundle, 'rootfs', `layer-${i}.bin`), bytes)
    await run(TOOLS.umoci, ['repack', '--image', `${layout}:${tag}`, bundle])
    await rm(bundle, { recursive: true, force: true })
  }
  await run(TOOLS.umoci, ['config', '--image', `${layout}:${tag}`, '--config.cmd', '/layer-0.bin'])
  await run(TOOLS.skopeo, [
    'copy',
    '--dest-tls-verify=false',
    `oci:${layout}:${tag}`,
    `docker://${registry}/${repository}:${tag}`
  ])
  const { stdout } = await run(TOOLS.skopeo, [
    'inspect',
    '--tls-verify=false',
    '--format',
    '{{.Digest}}',
    `docker://${registry}/${repository}:${tag}`
  ])
  return stdout.trim()
}

/** Builds a two-platform index (amd64 and arm64, one small tar layer each) and pushes it with skopeo. */
export async function pushIndex(
  work: string,
  registry: string,
  repository: string,
  tag: string
): Promise<string> {
  const layout = join(work, `${repository.replaceAll('/', '-')}-index`)
  const files = join(work, 'index-files')
  const images = []
  for (const architecture of ['amd64', 'arm64']) {
    await mkdir(join(files, architecture), { recursive: true })
    await writeFile(join(files, architecture, 'hello.txt'), `hello from ${architecture}\n`)
    const { stdout } = await run(TOOLS.tar, ['-C', join(files, architecture), '-cf', '-', 'hello.txt'], {
      encoding: 'buffer',
      maxBuffer: 1 << 20
    })
    images.push(
      buildImage({ layers: [stdout as unknown as Buffer], platform: { architecture, os: 'linux' } })
    )
  }
  const index = buildIndex(images)
  const store = await openOciLayoutStore({ directory: layout, create: true, watch: false })
  await store.addImage(`${registry}/${repository}:${tag}`, index)
  await store.close()
  // The layout names the image by its full reference; skopeo's oci: transport wants the tag alone.
  const indexPath = join(layout, 'index.json')
  const json = JSON.parse(await readFile(indexPath, 'utf8')) as {
    manifests: { annotations?: Record<string, string> }[]
  }
  for (const manifest of json.manifests) manifest.annotations = { 'org.opencontainers.image.ref.name': tag }
  await writeFile(indexPath, JSON.stringify(json))
  await run(TOOLS.skopeo, [
    'copy',
    '--all',
    '--dest-tls-verify=false',
    `oci:${layout}:${tag}`,
    `docker://${registry}/${repository}:${tag}`
  ])
  return index.root.digest
}

/** A kadmirror node process next to a containerd. */
export interface KadmirrorNode {
  url: string
  peerId: string
  addresses: string[]
  readMode: string
  responses: ResponseEvent[]
  /** Peer failures the node's mirror reported. */
  failures: PeerFailureEvent[]
  /** Blobs the node's mirror sent its client upstream for (`elected`: it won a flash-crowd election). */
  upstreams: UpstreamEvent[]
  child: ChildProcess
  stop(): Promise<void>
}

/** Starts test/e2e/kadmirror-node.ts for `containerd`. */
export async function startNode(
  containerd: ContainerdProcess,
  dataDir: string,
  bootstrap?: string,
  extraArgs: readonly string[] = []
): Promise<KadmirrorNode> {
  const script = fileURLToPath(new URL('./kadmirror-node.ts', import.meta.url))
  const args = [
    script,
    '--socket',
    containerd.socket,
    '--content-dir',
    containerd.contentDir,
    '--data-dir',
    dataDir
  ]
  if (bootstrap !== undefined) args.push('--bootstrap', bootstrap)
  args.push(...extraArgs)
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const responses: ResponseEvent[] = []
  const failures: PeerFailureEvent[] = []
  const upstreams: UpstreamEvent[] = []
  const lines = createInterface({ input: child.stdout as NonNullable<typeof child.stdout> })
  const ready = new Promise<Omit<KadmirrorNode, 'responses' | 'failures' | 'upstreams' | 'child' | 'stop'>>(
    (resolve, reject) => {
      lines.on('line', (line) => {
        const message = JSON.parse(line) as {
          ready?: boolean
          response?: ResponseEvent
          failure?: PeerFailureEvent
          upstream?: UpstreamEvent
        }
        if (message.ready === true)
          resolve(
            message as unknown as Omit<
              KadmirrorNode,
              'responses' | 'failures' | 'upstreams' | 'child' | 'stop'
            >
          )
        else if (message.response !== undefined) responses.push(message.response)
        else if (message.failure !== undefined) failures.push(message.failure)
        else if (message.upstream !== undefined) upstreams.push(message.upstream)
      })
      child.once('exit', (code) =>
        reject(new Error(`kadmirror node exited with ${code} before it was ready`))
      )
    }
  )
  const info = await ready
  return {
    ...info,
    responses,
    failures,
    upstreams,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGCONT')
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  }
}

/** The containerd each run uses: Debian's 1.6, and 2.x built from the Go module proxy (as Spegel tests several). */
export const CONTAINERD_VERSIONS: {
  name: string
  binaries: () => Promise<(ContainerdBinaries & { local: boolean }) | undefined>
}[] = [
  { name: '1.6', binaries: async () => undefined },
  { name: '2.x', binaries: async () => ({ ...(await buildContainerd2()), local: true }) }
]

/** The sizes of an image's blobs (config and layers) by digest, read from the upstream registry's manifest. */
export async function blobSizes(
  registryHost: string,
  repository: string,
  tag: string
): Promise<Map<string, number>> {
  const accept =
    'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
  const manifest = (await (
    await fetch(`http://${registryHost}/v2/${repository}/manifests/${tag}`, { headers: { accept } })
  ).json()) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] }
  return new Map([manifest.config, ...manifest.layers].map((d) => [d.digest, d.size]))
}

/** A containerd plus its hosts.toml directory. */
export interface Host {
  containerd: ContainerdProcess
  hostsDir: string
  /** `ctr images pull` through the hosts directory (or `hosts`), as a node pulls; resolves the time it took in ms. */
  pull(reference: string, hosts?: string): Promise<number>
  /** Removes every image whose name starts with `prefix` (tag and digest names) and collects their content. */
  remove(prefix: string): Promise<void>
  /** Digests of the content this containerd holds. */
  content(): Promise<Set<string>>
}

/**
 * Starts a containerd (Debian's, or `binaries`: containerd 2.x) with a hosts directory. containerd 2.x's `ctr` pulls
 * through the transfer service unless `--local`; kubelet's CRI pulls as `--local` does, so 2.x pulls use it.
 */
export async function startHost(
  work: string,
  name: string,
  binaries?: ContainerdBinaries & { local?: boolean }
): Promise<Host> {
  const containerd = await startContainerd(binaries)
  const local = binaries?.local === true ? ['--local'] : []
  const hostsDir = join(work, `${name}-hosts`)
  await mkdir(hostsDir, { recursive: true })
  return {
    containerd,
    hostsDir,
    async pull(reference, hosts = hostsDir) {
      const start = performance.now()
      await containerd.ctr(
        'k8s.io',
        'images',
        'pull',
        ...local,
        '--hosts-dir',
        hosts,
        '--snapshotter',
        'native',
        reference
      )
      return performance.now() - start
    },
    async remove(prefix) {
      const names = (await containerd.ctr('k8s.io', 'images', 'ls', '-q'))
        .split('\n')
        .filter((n) => n.startsWith(prefix))
      if (names.length > 0) await containerd.ctr('k8s.io', 'images', 'rm', '--sync', ...names)
    },
    async content() {
      return new Set(
        (await containerd.ctr('k8s.io', 'content', 'ls', '-q')).split('\n').filter((d) => d !== '')
      )
    }
  }
}

export { mkdtemp, rm }

/** A peer that advertises an image's blobs and serves zeros of the right length for each. */
export interface Liar {
  /** The blob digests it advertises (config and layers). */
  digests: string[]
  /** Blob GETs it answered. */
  served(): number
  stop(): Promise<void>
}

/**
 * Starts a lying peer for `repository:tag` of the upstream `registryHost`, joining the DHT through `bootstrap`. It
 * advertises the blobs (`as: 'holder'`, default) or claims them at their arbiters (`as: 'claimer'`: it says it is
 * fetching each one, so that nodes missing them wait for it and ask it directly) once it knows `peers` nodes.
 */
export async function startLiar(
  registryHost: string,
  repository: string,
  tag: string,
  bootstrap: string,
  as: 'holder' | 'claimer' = 'holder',
  peers = 1
): Promise<Liar> {
  const sizes = await blobSizes(registryHost, repository, tag)
  const registry = await startRogueRegistry(sizes)
  const router = await createLibp2pRouter({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowLoopback: true,
    registryPort: registry.port,
    bootstrapper: staticBootstrapper([bootstrap])
  })
  await waitFor(() => router.peers().length >= peers, 10_000, 'the liar to join')
  if (as === 'holder') await router.advertise([...sizes.keys()])
  else {
    // Every node's view holds the liar (identify done) before it claims: they then agree on the arbiters.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    for (const digest of sizes.keys()) await router.claim?.(digest)
  }
  return {
    digests: [...sizes.keys()],
    served: registry.served,
    async stop() {
      await router.close()
      await registry.close()
    }
  }
}
