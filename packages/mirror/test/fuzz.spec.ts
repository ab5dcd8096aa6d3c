// fast-check against a real mirror server over HTTP: arbitrary methods, paths, queries and headers. No answer is a
// 5xx, every /v2/ error has an OCI error body, and no byte from outside the store (a file beside the OCI layout)
// ever reaches a client. Runs FUZZ_RUNS cases (default 100 000) on one keep-alive connection.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildImage, digestOf } from '@kadmirror/oci'
import { createMemoryNetwork } from '@kadmirror/routing'
import { type OciLayoutStore, openOciLayoutStore } from '@kadmirror/store'
import fc from 'fast-check'
import { Client } from 'undici'
import { createMirrorServer, type MirrorServer } from '../src/index.ts'

const RUNS = Number(process.env.FUZZ_RUNS ?? 100_000)
/** In a file beside the layout: if any answer carries it, a path escaped the store. */
const SECRET = 'not-for-clients-4242'

describe('mirror handler under fuzzing', function () {
  this.timeout(600_000)
  let dir: string
  let store: OciLayoutStore
  let server: MirrorServer
  let client: Client
  const held: string[] = []
  const contents: Buffer[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-fuzz-'))
    await writeFile(join(dir, 'secret'), SECRET)
    await writeFile(join(dir, 'index.secret'), SECRET)
    store = await openOciLayoutStore({ directory: join(dir, 'layout'), create: true })
    const image = buildImage({ layers: [Buffer.from('fuzz layer'), Buffer.alloc(300 * 1024, 1)] })
    await store.addImage('example.com/team/app:v1', image)
    held.push(...image.blobs.keys())
    contents.push(...[...image.blobs.values()].map((bytes) => Buffer.from(bytes)))
    const router = createMemoryNetwork().createRouter({ registryUrl: 'http://127.0.0.1:1' })
    server = await createMirrorServer({ store, router, port: 0, host: '127.0.0.1', resolveTimeoutMs: 0 })
    client = new Client(server.url, { pipelining: 1, keepAliveTimeout: 10_000 })
  })

  after(async () => {
    await client?.close()
    await server?.close()
    await store?.close()
    await rm(dir, { recursive: true, force: true })
  })

  const segment = fc.oneof(
    fc.constantFrom(
      'team',
      'app',
      'library',
      'nginx',
      '..',
      '.',
      '%2e%2e',
      '%2f',
      '%2F..',
      'a'.repeat(300),
      '',
      '~',
      '\u00e9'
    ),
    fc.stringMatching(/^[a-z0-9._-]{1,20}$/),
    fc.string({ maxLength: 12 })
  )
  const reference = fc.oneof(
    fc.constantFrom(
      ...['latest', 'v1', '-bad', 'a'.repeat(200), 'sha256:', 'sha256:zz', '../../secret', '%2e%2e%2fsecret']
    ),
    fc.constant('').map(() => held[0] as string),
    fc.integer({ min: 0, max: 10 }).map((i) => held[i % 4] ?? 'sha256:00'),
    fc.stringMatching(/^sha(256|512):[0-9a-f]{0,130}$/),
    fc.string({ maxLength: 20 })
  )
  const endpoint = fc.constantFrom('blobs', 'manifests', 'tags', 'referrers', 'uploads', '')
  const query = fc.oneof(
    fc.constant(''),
    fc.constantFrom(
      '?ns=example.com',
      '?ns=docker.io',
      '?ns=',
      '?ns=a&ns=b',
      `?ns=${'x'.repeat(300)}`,
      '?digest=x'
    ),
    fc.string({ maxLength: 30 }).map((s) => `?${s}`)
  )
  const path = fc.oneof(
    fc
      .tuple(fc.array(segment, { minLength: 0, maxLength: 4 }), endpoint, reference, query)
      .map(([names, kind, ref, q]) => `/v2/${names.join('/')}/${kind}/${ref}${q}`),
    fc.constantFrom(
      '/v2/',
      '/v2',
      '/readyz',
      '/livez',
      '/',
      '/v2/../secret',
      '/secret',
      '//v2//',
      '/v2/_catalog'
    ),
    fc.string({ maxLength: 40 }).map((s) => `/${s}`)
  )
  const range = fc.oneof(
    fc.constant(undefined),
    fc.tuple(fc.nat(400_000), fc.nat(400_000)).map(([a, b]) => `bytes=${a}-${b}`),
    fc.nat(400_000).map((a) => `bytes=${a}-`),
    fc.nat(400_000).map((a) => `bytes=-${a}`),
    fc.constantFrom('bytes=0-0,5-9', 'bytes=', 'bytes=a-b', 'items=0-1', 'bytes=99999999999999999999-'),
    fc.string({ maxLength: 20 })
  )
  const method = fc.constantFrom('GET', 'GET', 'GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS')
  const request = fc.record({
    method,
    path,
    range,
    ifNoneMatch: fc.option(fc.constantFrom('*', '"x"', `"${'sha256:'}"`), { nil: undefined }),
    accept: fc.option(fc.string({ maxLength: 30 }), { nil: undefined })
  })

  it(`answers ${RUNS} arbitrary requests without a 5xx, with OCI errors, and with nothing from outside the store`, async () => {
    let sent = 0
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = {}
        if (r.range !== undefined) headers.range = r.range
        if (r.ifNoneMatch !== undefined) headers['if-none-match'] = r.ifNoneMatch
        if (r.accept !== undefined) headers.accept = r.accept
        let response: Awaited<ReturnType<Client['request']>>
        try {
          response = await client.request({ path: r.path, method: r.method, headers })
        } catch (err) {
          // undici refuses to send some paths or header values at all: nothing reached the server.
          if ((err as { code?: string }).code === 'UND_ERR_INVALID_ARG' || err instanceof TypeError) return
          throw err
        }
        const body = Buffer.from(await response.body.arrayBuffer())
        sent++
        // /readyz says 503 while the router knows no peer (here: never); that is its answer, not a failure.
        const notReady = response.statusCode === 503 && r.path.startsWith('/readyz')
        assert.ok(
          response.statusCode < 500 || notReady,
          `${r.method} ${r.path} → ${response.statusCode} ${body}`
        )
        assert.ok(!body.includes(SECRET), `${r.method} ${r.path} leaked a file outside the store`)
        if (response.statusCode >= 400 && r.path.startsWith('/v2') && r.method !== 'HEAD') {
          const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: string }[] }
          assert.ok(typeof parsed.errors?.[0]?.code === 'string', `${r.path} → ${body}`)
        }
        const pathname = r.path.split('?')[0] as string
        const content = /\/(blobs|manifests)\/[^/]*$/.test(pathname)
        if ((response.statusCode === 200 || response.statusCode === 206) && r.method === 'GET' && content) {
          const whole = response.statusCode === 200
          assert.ok(
            whole ? held.includes(digestOf(body)) : contents.some((bytes) => bytes.includes(body)),
            `${r.path} served bytes the store does not hold`
          )
        }
      }),
      { numRuns: RUNS }
    )
    assert.ok(sent > RUNS * 0.9, `only ${sent} of ${RUNS} requests reached the server`)
  })
})
