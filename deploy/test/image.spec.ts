/**
 * The container image: built reproducibly from pinned inputs, made of the Node runtime and the bundled daemon only,
 * loaded with skopeo into a registry, pulled and run by real containerd with a read-only root filesystem as its
 * unprivileged user — two containers form a cluster: `/readyz` 200, a blob served from the other node, a 404 miss.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chown, mkdir, mkdtemp, readdir, readFile, rm, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { buildImage, digestOf } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { freePorts, waitFor } from '@kadmirror/test-support'
import { extract } from 'tar-stream'
import {
  type ContainerdProcess,
  containerdUnavailable,
  startContainerd
} from '../../packages/containerd/test/containerd-process.ts'
import { e2eUnavailable, type Registry, startRegistry } from '../../test/e2e/fixtures.ts'
import {
  buildImageLayout,
  type ImageLayoutSummary,
  INPUTS_FILE,
  missingDownloads,
  readInputs,
  writeHostTree
} from '../image/src/index.ts'

const run = promisify(execFile)

/** Why the image cannot be built here without the network, or undefined. */
async function imageUnavailable(): Promise<string | undefined> {
  if (!existsSync('/usr/bin/dpkg-deb')) return 'dpkg-deb is not installed (it unpacks the Debian libraries)'
  const inputs = await readInputs(INPUTS_FILE)
  const missing = [...missingDownloads(inputs, 'amd64'), ...missingDownloads(inputs, 'arm64')]
  if (missing.length > 0)
    return `${missing.length} pinned inputs are not downloaded (node deploy/image/src/build.ts --fetch-only; .ci/run does it)`
  return undefined
}

/** The paths in the uncompressed tar of one layer blob. */
async function layerPaths(layout: string, digest: string): Promise<string[]> {
  const tar = extract()
  const paths: string[] = []
  tar.end(gunzipSync(await readFile(join(layout, 'blobs', 'sha256', digest.slice(7)))))
  for await (const entry of tar) {
    paths.push(entry.header.name)
    entry.resume()
  }
  return paths
}

async function blobJson(layout: string, digest: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(layout, 'blobs', 'sha256', digest.slice(7)), 'utf8'))
}

describe('the container image', function () {
  this.timeout(300_000)
  let dir: string
  let image: ImageLayoutSummary

  before(async function () {
    const reason = await imageUnavailable()
    if (reason !== undefined) {
      console.log(`    skipped: ${reason}`)
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-image-test-'))
    image = await buildImageLayout({
      out: join(dir, 'layout'),
      archive: join(dir, 'image.tar'),
      architectures: ['amd64', 'arm64'],
      offline: true
    })
  })

  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('is built reproducibly: a second build gives the same manifest digest', async () => {
    const again = await buildImageLayout({ out: join(dir, 'again'), architectures: ['amd64'], offline: true })
    assert.equal(again.images[0]?.manifest, image.images[0]?.manifest)
  })

  it('has an index over amd64 and arm64 naming the image for containerd', async () => {
    const index = JSON.parse(await readFile(join(image.layout, 'index.json'), 'utf8'))
    assert.equal(index.manifests[0].annotations['io.containerd.image.name'], image.reference)
    const platforms = (await blobJson(image.layout, image.index)).manifests as {
      platform: { architecture: string }
    }[]
    assert.deepEqual(
      platforms.map((m) => m.platform.architecture),
      ['amd64', 'arm64']
    )
  })

  it('runs node on the bundled daemon as an unprivileged user', async () => {
    const manifest = await blobJson(image.layout, image.images[0]?.manifest as string)
    const config = await blobJson(image.layout, (manifest.config as { digest: string }).digest)
    const settings = config.config as { User: string; Entrypoint: string[] }
    assert.equal(settings.User, '65532:65532')
    assert.deepEqual(settings.Entrypoint, ['/nodejs/bin/node', '/app/bin/kadmirror.mjs'])
  })

  it('holds the runtime libraries, node and the bundle only: no node_modules, sources or compilers', async () => {
    const manifest = await blobJson(image.layout, image.images[0]?.manifest as string)
    const paths = (
      await Promise.all(
        (manifest.layers as { digest: string }[]).map((l) => layerPaths(image.layout, l.digest))
      )
    ).flat()
    assert.ok(paths.includes('nodejs/bin/node'))
    assert.ok(paths.includes('app/bin/kadmirror.mjs'))
    assert.ok(paths.includes('lib/x86_64-linux-gnu/libc.so.6'))
    const unwanted = paths.filter((p) => /node_modules|\.ts$|\/(gcc|cc|g\+\+|npm|pnpm)$/.test(p))
    assert.deepEqual(unwanted, [])
    const tops = [...new Set(paths.map((p) => p.split('/')[0]))].sort()
    assert.deepEqual(tops, ['app', 'etc', 'home', 'lib', 'lib64', 'nodejs', 'root', 'tmp', 'usr', 'var'])
  })

  it('writes the host tree the systemd unit runs: /opt/kadmirror/nodejs/bin/node on app/bin/kadmirror.mjs', async () => {
    const tree = join(dir, 'host-tree')
    await writeHostTree(tree, 'amd64', true)
    const { stdout } = await run(join(tree, 'nodejs', 'bin', 'node'), [
      join(tree, 'app', 'bin', 'kadmirror.mjs'),
      'version'
    ])
    assert.match(stdout, /^kadmirror 0\.1\.0 \(node v24\.21\.0, linux\/x64\)/)
    const unit = await readFile(
      join(dirname(dirname(fileURLToPath(import.meta.url))), 'systemd', 'kadmirror.service'),
      'utf8'
    )
    assert.match(
      unit,
      /^ExecStart=\/opt\/kadmirror\/nodejs\/bin\/node \/opt\/kadmirror\/app\/bin\/kadmirror\.mjs registry$/m
    )
  })

  it('runs its arm64 node on the bundle (under qemu-user, with the image as the library root)', async function () {
    if (!existsSync('/usr/bin/qemu-aarch64')) {
      console.log("      skipped: qemu-aarch64 is not installed (Debian's qemu-user)")
      this.skip()
    }
    const manifests = (await blobJson(image.layout, image.index)).manifests as {
      digest: string
      platform: { architecture: string }
    }[]
    const arm64 = manifests.find((m) => m.platform.architecture === 'arm64')?.digest as string
    const rootfs = join(dir, 'arm64-rootfs')
    await mkdir(rootfs)
    for (const layer of (await blobJson(image.layout, arm64)).layers as { digest: string }[])
      await run('tar', ['-xzf', join(image.layout, 'blobs', 'sha256', layer.digest.slice(7)), '-C', rootfs])
    const { stdout } = await run('qemu-aarch64', [
      ...['-L', rootfs, join(rootfs, 'nodejs', 'bin', 'node')],
      ...[join(rootfs, 'app', 'bin', 'kadmirror.mjs'), 'version']
    ])
    assert.match(stdout, /linux\/arm64\)/)
  })

  describe('under containerd', () => {
    let containerd: ContainerdProcess
    let registry: Registry
    const reference = () => `${registry.host}/kadmirror:test`
    const running: { id: string; child: ChildProcess }[] = []

    before(async function () {
      const reason = containerdUnavailable() ?? e2eUnavailable()
      if (reason !== undefined) {
        console.log(`    skipped: ${reason}`)
        this.skip()
      }
      registry = await startRegistry(await mkdtemp(join(dir, 'registry-')))
      await run('skopeo', [
        'copy',
        '--all',
        '--dest-tls-verify=false',
        `oci:${image.layout}:0.1.0`,
        `docker://${reference()}`
      ])
      containerd = await startContainerd()
      await containerd.ctr('kadmirror', 'images', 'pull', '--plain-http', reference())
    })

    after(async () => {
      for (const { id, child } of running) {
        await containerd.ctr('kadmirror', 'task', 'kill', '-s', 'SIGKILL', id).catch(() => undefined)
        if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve))
      }
      await containerd?.stop()
      await registry?.stop()
      // runc leaves the namespace's (empty) cgroup in each hierarchy.
      for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => []))
        await rmdir(join('/sys/fs/cgroup', hierarchy, 'kadmirror')).catch(() => undefined)
    })

    /** `ctr run` of the image (read-only root, host network), `args` after the entrypoint. */
    function runContainer(id: string, args: string[], mounts: string[] = []): ChildProcess {
      const child = spawn(
        'ctr',
        [
          ...['-a', containerd.socket, '-n', 'kadmirror', 'run', '--rm', '--read-only', '--net-host'],
          ...mounts.flatMap((m) => ['--mount', `type=bind,src=${m},dst=${m},options=rbind:rw`]),
          ...[reference(), id, '/nodejs/bin/node', '/app/bin/kadmirror.mjs', ...args]
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] }
      )
      running.push({ id, child })
      return child
    }

    async function output(child: ChildProcess): Promise<string> {
      let text = ''
      child.stdout?.on('data', (c: Buffer) => (text += c.toString()))
      child.stderr?.on('data', (c: Buffer) => (text += c.toString()))
      await new Promise((resolve) => child.once('exit', resolve))
      return text
    }

    it('runs as uid 65532 on a read-only root filesystem', async () => {
      const probe = runContainer('probe', ['version'])
      assert.match(await output(probe), /^kadmirror 0\.1\.0 \(node v24/)
      const id = spawn(
        'ctr',
        [
          ...[
            '-a',
            containerd.socket,
            '-n',
            'kadmirror',
            'run',
            '--rm',
            '--read-only',
            reference(),
            'probe-fs'
          ],
          ...[
            '/nodejs/bin/node',
            '-e',
            'try{require("fs").writeFileSync("/x","")}catch(e){console.log(process.getuid(),e.code)}'
          ]
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] }
      )
      assert.equal((await output(id)).trim(), '65532 EROFS')
    })

    it('two containers form a cluster: /readyz 200, a blob from the other node, a miss is a 404', async () => {
      const [reg1, router1, metrics1, reg2, router2, metrics2] = await freePorts(6)
      const data = await mkdtemp(join(dir, 'nodes-'))
      const app = buildImage({ layers: [Buffer.from('a layer served from node 1 to node 2')] })
      const layer = [...app.blobs.keys()].find((d) => d !== app.root.digest) as string
      const nodes = [1, 2].map((i) => join(data, `node-${i}`))
      for (const node of nodes) await mkdir(join(node, 'layout'), { recursive: true })
      const store = await openOciLayoutStore({ directory: join(nodes[0] as string, 'layout') })
      await store.addImage('registry.example.com/team/app:1.0', app)
      await store.close()
      for (const node of nodes) await chownTree(node, 65532)
      const start = (i: number, ports: number[], peer: number) =>
        runContainer(
          `node-${i}`,
          [
            ...[
              'registry',
              '--bootstrap-kind=static',
              '--static-bootstrap-peers',
              `/ip4/127.0.0.1/tcp/${peer}`
            ],
            ...[
              `--store=oci-layout:${nodes[i - 1]}/layout`,
              `--data-dir=${nodes[i - 1]}/data`,
              '--allow-loopback'
            ],
            `--registry-addr=127.0.0.1:${ports[0]}`,
            `--router-addr=127.0.0.1:${ports[1]}`,
            `--metrics-addr=127.0.0.1:${ports[2]}`
          ],
          [nodes[i - 1] as string]
        )
      start(1, [reg1, router1, metrics1] as number[], router2 as number)
      start(2, [reg2, router2, metrics2] as number[], router1 as number)
      const status = (url: string) =>
        fetch(url).then(
          (r) => r.status,
          () => 0
        )
      await waitFor(async () => (await status(`http://127.0.0.1:${reg2}/readyz`)) === 200, 60_000)
      const url = `http://127.0.0.1:${reg2}/v2/team/app/blobs/${layer}?ns=registry.example.com`
      let body = Buffer.alloc(0)
      await waitFor(async () => {
        const res = await fetch(url)
        body = Buffer.from(await res.arrayBuffer())
        return res.status === 200
      }, 30_000)
      assert.equal(digestOf(body), layer)
      const miss = await fetch(url.replace(layer.slice(7), '0'.repeat(64)))
      assert.equal(miss.status, 404)
      assert.equal(((await miss.json()) as { errors: { code: string }[] }).errors[0]?.code, 'BLOB_UNKNOWN')
    })
  })
})

async function chownTree(path: string, uid: number): Promise<void> {
  await chown(path, uid, uid)
  for (const name of await readdir(path, { recursive: true })) await chown(join(path, name), uid, uid)
}
