import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePorts } from '@kadmirror/test-support'
import { request } from 'undici'
import { COMMANDS } from '../src/cli.ts'
import { runCli, startCli } from './cli-process.ts'

/** A registry run on loopback that needs nothing else (static bootstrap to a port nobody listens on). */
const LOCAL = [
  'registry',
  '--bootstrap-kind=static',
  '--static-bootstrap-peers',
  '/ip4/127.0.0.1/tcp/1',
  '--allow-loopback'
]

/** Asserts the run was a usage error: exit 2, one line naming the problem, then the usage line. */
function assertUsageError(result: { code: number | null; stderr: string }, pattern: RegExp): void {
  const lines = result.stderr.trimEnd().split('\n')
  assert.equal(result.code, 2, result.stderr)
  assert.equal(lines.length, 2, result.stderr)
  assert.match(lines[0] as string, pattern)
  assert.match(lines[1] as string, /^Usage: kadmirror /)
}

describe('kadmirror CLI', function () {
  this.timeout(60_000)
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-cli-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('prints usage for --help on every command and exits 0', async () => {
    for (const command of ['', ...COMMANDS.map((c) => c.name)]) {
      const result = await runCli([...(command === '' ? [] : [command]), '--help'])
      assert.equal(result.code, 0, `${command}: ${result.stderr}`)
      assert.match(result.stdout, /^Usage: kadmirror/, command)
      assert.equal(result.stderr, '')
    }
  })

  it('lists every registry flag of Spegel in the registry help, with its environment variable', async () => {
    const { stdout } = await runCli(['registry', '--help'])
    for (const flag of [
      'bootstrap-kind',
      'dns-bootstrap-domain',
      'http-bootstrap-addr',
      'http-bootstrap-peer',
      'http-bootstrap-url',
      'http-bootstrap-cert-dir',
      'static-bootstrap-peers',
      'metrics-addr',
      'containerd-sock',
      'containerd-namespace',
      'containerd-content-path',
      'data-dir',
      'router-addr',
      'registry-addr',
      'mirrored-registries',
      'registry-filters',
      'mirror-resolve-timeout',
      'mirror-resolve-retries',
      'debug-web-enabled'
    ])
      assert.match(stdout, new RegExp(`--${flag} `), flag)
    assert.match(stdout, /\[env:\s+MIRROR_RESOLVE_TIMEOUT\]/)
  })

  it('accepts configure as an alias of configuration', async () => {
    const result = await runCli(['configure', '--help'])
    assert.equal(result.code, 0)
    assert.match(result.stdout, /--mirror-targets/)
  })

  it('refuses an unknown flag with one line, the usage line and exit 2', async () => {
    assertUsageError(await runCli(['registry', '--bogus']), /^kadmirror registry: unknown option '--bogus'$/)
  })

  it('refuses an unknown command', async () => {
    assertUsageError(await runCli(['serve']), /^kadmirror serve: unknown command 'serve'$/)
  })

  it('refuses a bad duration, port, URL, regular expression and log level, naming the flag and the value', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[...LOCAL, '--mirror-resolve-timeout=20'], /--mirror-resolve-timeout: "20" is not a duration/],
      [[...LOCAL, '--registry-addr=:70000'], /--registry-addr: ":70000" is not a listen address/],
      [
        ['registry', '--bootstrap-kind=http', '--http-bootstrap-url=ftp://x'],
        /--http-bootstrap-url: "ftp:\/\/x" is not an http or https URL/
      ],
      [
        [...LOCAL, '--registry-filters', '(unclosed'],
        /--registry-filters: "\(unclosed" is not a regular expression/
      ],
      [['--log-level=LOUD', 'version'], /--log-level: "LOUD" is not a log level/],
      [[...LOCAL, '--membership=star'], /--membership: "star" is not a membership \(mesh or gossip\)/],
      [[...LOCAL, '--peer-connections=3'], /--peer-connections: "3"/],
      [['cleanup-wait', '--probe-endpoint=x:1', '--period=soon'], /--period: "soon" is not a duration/]
    ]
    for (const [args, pattern] of cases) assertUsageError(await runCli(args), pattern)
  })

  it('refuses a bad value from the environment, naming the variable', async () => {
    assertUsageError(
      await runCli(LOCAL, { MIRROR_RESOLVE_RETRIES: 'many' }),
      /MIRROR_RESOLVE_RETRIES: "many" is not a whole number/
    )
  })

  it('requires the bootstrap kind and what the kind needs', async () => {
    assertUsageError(await runCli(['registry']), /--bootstrap-kind \(or BOOTSTRAP_KIND\) is required/)
    assertUsageError(
      await runCli(['registry', '--bootstrap-kind=dns']),
      /--bootstrap-kind=dns needs --dns-bootstrap-domain/
    )
    assertUsageError(await runCli(['registry', '--bootstrap-kind=static']), /needs --static-bootstrap-peers/)
    assertUsageError(await runCli(['configuration']), /--mirror-targets \(or MIRROR_TARGETS\) is required/)
  })

  it('refuses a --store directory that does not exist, or is a file, and creates nothing', async () => {
    const missing = join(dir, 'missing')
    assertUsageError(
      await runCli([...LOCAL, `--store=oci-layout:${missing}`]),
      /--store: .*missing does not exist/
    )
    await writeFile(join(dir, 'file'), 'x')
    assertUsageError(
      await runCli([...LOCAL, `--store=oci-layout:${join(dir, 'file')}`]),
      /is not a directory/
    )
    assertUsageError(await runCli([...LOCAL, '--store=s3:bucket']), /"s3:bucket" is not a store/)
    assert.deepEqual(await readdir(dir), ['file'])
  })

  it('refuses a --data-dir that is a file', async () => {
    await writeFile(join(dir, 'data'), 'x')
    await mkdir(join(dir, 'layout'))
    assertUsageError(
      await runCli([
        ...LOCAL,
        `--store=oci-layout:${join(dir, 'layout')}`,
        `--data-dir=${join(dir, 'data')}`
      ]),
      /--data-dir: .* is not a directory/
    )
  })

  it('says in one line that the registry port is in use, and exits 1', async () => {
    const blocker: Server = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    await mkdir(join(dir, 'layout'))
    try {
      const result = await runCli([
        ...LOCAL,
        `--store=oci-layout:${join(dir, 'layout')}`,
        `--registry-addr=127.0.0.1:${port}`,
        '--router-addr=127.0.0.1:0',
        '--metrics-addr=127.0.0.1:0'
      ])
      assert.equal(result.code, 1, result.stderr)
      const lines = result.stderr
        .trimEnd()
        .split('\n')
        .filter((l) => !l.startsWith('{'))
      assert.deepEqual(lines.length, 1, result.stderr)
      assert.match(
        lines[0] as string,
        /^kadmirror registry: listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+$/
      )
    } finally {
      blocker.close()
    }
  })

  it('keeps running when containerd’s socket is missing: one log line per retry, and the mirror answers 404', async () => {
    const [registry, router, metrics] = await freePorts(3)
    const cli = startCli([
      ...LOCAL,
      `--containerd-sock=${join(dir, 'no-containerd.sock')}`,
      `--containerd-content-path=${join(dir, 'content')}`,
      `--registry-addr=127.0.0.1:${registry}`,
      `--router-addr=127.0.0.1:${router}`,
      `--metrics-addr=127.0.0.1:${metrics}`
    ])
    try {
      const line = await cli.waitForLog(/cannot open the containerd store/)
      assert.equal(line.level, 'WARN')
      const res = await request(`http://127.0.0.1:${registry}/v2/library/nginx/manifests/1.27?ns=docker.io`)
      assert.equal(res.statusCode, 404)
      await res.body.dump()
      assert.doesNotMatch(cli.stderr(), /\n\s+at /)
      const result = await cli.stop('SIGTERM')
      assert.equal(result.code, 0, result.stderr)
    } finally {
      await cli.stop('SIGKILL')
    }
  })

  it('prints its version as text and as JSON with runtime facts', async () => {
    const text = await runCli(['version'])
    assert.match(text.stdout, /^kadmirror \d+\.\d+\.\d+ \(node v\d+/)
    const json = JSON.parse((await runCli(['version', '--format', 'json'])).stdout)
    assert.deepEqual(Object.keys(json).sort(), ['node', 'platform', 'v8', 'version'])
    assertUsageError(await runCli(['version', '--format', 'yaml']), /"yaml" is not text or json/)
  })
})
