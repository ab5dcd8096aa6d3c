// The mirror handler embedded in express and fastify, as examples/custom-mirror mounts it.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { createMirrorHandler, type MirrorHandler } from '@kadmirror/mirror'
import { type BuiltImage, buildImage, type Digest } from '@kadmirror/oci'
import { createMemoryNetwork } from '@kadmirror/routing'
import { createMemoryStore, type MemoryStore } from '@kadmirror/store'
import { Agent } from 'undici'
import { expressApp, fastifyApp } from '../examples/custom-mirror/src/frameworks.ts'

const client = new Agent()

async function send(base: string, path: string, method = 'GET') {
  const res = await client.request({ origin: base, path, method })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

const frameworks: [string, (handler: MirrorHandler) => Promise<RequestListener>][] = [
  ['express', async (handler) => expressApp(handler)],
  [
    'fastify',
    async (handler) => {
      const app = fastifyApp(handler)
      await app.ready()
      return (req, res) => app.routing(req, res)
    }
  ]
]

for (const [name, mount] of frameworks) {
  describe(`mirror handler mounted in ${name}`, () => {
    let server: Server
    let handler: MirrorHandler
    let store: MemoryStore
    let base: string
    let image: BuiltImage
    let layer: Digest

    before(async () => {
      image = buildImage({ layers: [Buffer.from(`${name} layer`)] })
      layer = [...image.blobs.keys()].find(
        (d) => image.blobs.get(d)?.toString() === `${name} layer`
      ) as Digest
      store = createMemoryStore()
      await store.addImage('example.com/team/app:v1', image)
      const router = createMemoryNetwork().createRouter({ registryUrl: 'http://127.0.0.1:1' })
      handler = createMirrorHandler({ store, router })
      server = createServer(await mount(handler))
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    })

    after(async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await handler.close()
      await store.close()
    })

    it('answers /v2/ with the registry API version header', async () => {
      const res = await send(base, '/v2/')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
    })

    it('serves a blob from the local store', async () => {
      const res = await send(base, `/v2/team/app/blobs/${layer}?ns=example.com`)
      assert.equal(res.status, 200)
      assert.equal(res.body.toString(), `${name} layer`)
    })

    it('resolves a tag with ns', async () => {
      const res = await send(base, '/v2/team/app/manifests/v1?ns=example.com', 'HEAD')
      assert.equal(res.status, 200)
      assert.equal(res.headers['docker-content-digest'], image.root.digest)
    })

    it("answers PUT with the mirror's 405 and an OCI error body", async () => {
      const res = await send(base, '/v2/team/app/manifests/v1', 'PUT')
      assert.equal(res.status, 405)
      assert.match(res.body.toString(), /"code":"UNSUPPORTED"/)
    })

    it('answers a traversal attempt with 400 NAME_INVALID', async () => {
      const res = await send(base, `/v2/team%2f..%2f..%2fetc/blobs/sha256:${'0'.repeat(64)}`)
      assert.equal(res.status, 400)
      assert.match(res.body.toString(), /NAME_INVALID/)
    })

    it("leaves other paths to the app's own routes", async () => {
      const res = await send(base, '/hello')
      assert.equal(res.status, 200)
      assert.equal(res.body.toString(), `hello from ${name}\n`)
    })
  })
}

describe('custom-mirror example daemon', function () {
  this.timeout(30_000)
  const main = new URL('../examples/custom-mirror/src/main.ts', import.meta.url).pathname

  for (const framework of ['http', 'express', 'fastify']) {
    it(`serves /v2/ with --framework ${framework} and exits 0 on SIGTERM`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'kadmirror-custom-'))
      const child = spawn(
        process.execPath,
        [main, '--store', dir, '--framework', framework, '--port', '0', '--router-port', '0', '--loopback'],
        { stdio: ['ignore', 'pipe', 'inherit'] }
      )
      try {
        const lines = createInterface({ input: child.stdout })
        let registry: string | undefined
        for await (const line of lines) {
          const entry = JSON.parse(line) as { msg?: string; registry?: string }
          if (entry.msg === 'mirror ready') {
            registry = entry.registry
            break
          }
        }
        assert.ok(registry !== undefined)
        assert.equal((await send(registry, '/v2/')).status, 200)
        child.kill('SIGTERM')
        const [code] = await once(child, 'exit')
        assert.equal(code, 0)
      } finally {
        child.kill('SIGKILL')
        await rm(dir, { recursive: true, force: true })
      }
    })
  }

  it('exits 2 with a one-line error without --store', async () => {
    const child = spawn(process.execPath, [main], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const [code] = await once(child, 'exit')
    assert.equal(code, 2)
    assert.match(stderr, /^custom-mirror: --store DIR is required[^\n]*\n$/)
  })
})
