import assert from 'node:assert/strict'
import { createHash, randomFillSync } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { get, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { buildImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { freePorts } from '@kadmirror/test-support'
import { request } from 'undici'
import { runCli, startCli } from './cli-process.ts'

/** Every file below `dir` with its bytes, by relative path. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    out[relative(dir, path)] = (await readFile(path)).toString('base64')
  }
  return out
}

describe('kadmirror lifecycle', function () {
  this.timeout(90_000)
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-life-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('finishes an in-flight 64 MiB download after SIGTERM, then exits 0', async () => {
    const layer = randomFillSync(new Uint8Array(64 * 1024 * 1024))
    const digest = `sha256:${createHash('sha256').update(layer).digest('hex')}`
    const store = await openOciLayoutStore({ directory: join(dir, 'layout') })
    await store.addImage('registry.example.com/big:1', buildImage({ layers: [layer] }))
    await store.close()
    const [registry, router, metrics] = await freePorts(3)
    const cli = startCli([
      ...[
        'registry',
        '--bootstrap-kind=static',
        '--static-bootstrap-peers',
        '/ip4/127.0.0.1/tcp/1',
        '--allow-loopback'
      ],
      `--store=oci-layout:${join(dir, 'layout')}`,
      `--registry-addr=127.0.0.1:${registry}`,
      `--router-addr=127.0.0.1:${router}`,
      `--metrics-addr=127.0.0.1:${metrics}`
    ])
    try {
      await cli.waitForLog(/"msg":"running kadmirror"/)
      const res = await new Promise<IncomingMessage>((resolve, reject) =>
        get(`http://127.0.0.1:${registry}/v2/big/blobs/${digest}?ns=registry.example.com`, resolve).on(
          'error',
          reject
        )
      )
      assert.equal(res.statusCode, 200)
      res.pause()
      cli.child.kill('SIGTERM')
      await cli.waitForLog(/"msg":"shutting down"/)
      await new Promise((resolve) => setTimeout(resolve, 300))
      // A new connection is refused while the transfer drains.
      await assert.rejects(request(`http://127.0.0.1:${registry}/readyz`), /ECONNREFUSED/)
      const hash = createHash('sha256')
      let bytes = 0
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        bytes += chunk.byteLength
      })
      res.resume()
      await new Promise((resolve, reject) => res.on('end', resolve).on('error', reject))
      assert.equal(bytes, layer.byteLength)
      assert.equal(`sha256:${hash.digest('hex')}`, digest)
      const result = await cli.exited
      assert.equal(result.code, 0, result.stderr)
    } finally {
      await cli.stop('SIGKILL')
    }
  })

  it('leaves containerd’s registry config byte-for-byte as it was after configuration then cleanup', async () => {
    const config = join(dir, 'certs.d')
    await mkdir(join(config, 'docker.io'), { recursive: true })
    await writeFile(
      join(config, 'docker.io', 'hosts.toml'),
      'server = "https://registry-1.docker.io"\n[host."https://mirror.example"]\n  capabilities = ["pull"]\n'
    )
    await writeFile(join(config, 'docker.io', 'ca.crt'), 'not really a certificate\n')
    const before = await snapshot(config)
    const env = { KADMIRROR_BASIC_AUTH_DIR: join(dir, 'no-auth') }
    const configured = await runCli(
      [
        'configuration',
        `--containerd-registry-config-path=${config}`,
        '--mirror-targets',
        'http://127.0.0.1:5000',
        '--mirrored-registries',
        'https://docker.io',
        'https://ghcr.io'
      ],
      env
    )
    assert.equal(configured.code, 0, configured.stderr)
    const hosts = await readFile(join(config, 'ghcr.io', 'hosts.toml'), 'utf8')
    assert.match(hosts, /\[host\."http:\/\/127\.0\.0\.1:5000"\]/)
    assert.notDeepEqual(await snapshot(config), before)
    const [port] = await freePorts(1)
    const cleanup = startCli(
      ['cleanup', `--addr=127.0.0.1:${port}`, `--containerd-registry-config-path=${config}`],
      env
    )
    try {
      await cleanup.waitForLog(/restored the mirror configuration/)
      assert.equal((await request(`http://127.0.0.1:${port}/readyz`)).statusCode, 200)
      assert.equal((await cleanup.stop('SIGTERM')).code, 0)
    } finally {
      await cleanup.stop('SIGKILL')
    }
    assert.deepEqual(await snapshot(config), before)
  })

  it('waits in cleanup-wait until the probed endpoint answers ready the threshold number of times', async () => {
    const [port] = await freePorts(1)
    const cleanup = startCli([
      'cleanup',
      `--addr=127.0.0.1:${port}`,
      `--containerd-registry-config-path=${join(dir, 'empty')}`
    ])
    try {
      await cleanup.waitForLog(/restored the mirror configuration/)
      const started = Date.now()
      const waited = await runCli([
        'cleanup-wait',
        `--probe-endpoint=127.0.0.1:${port}`,
        '--threshold=3',
        '--period=100ms'
      ])
      assert.equal(waited.code, 0, waited.stderr)
      assert.ok(Date.now() - started >= 200)
      assert.match(waited.stderr, /probe threshold reached/)
    } finally {
      await cleanup.stop('SIGKILL')
    }
  })
})
