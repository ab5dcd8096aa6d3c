import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REGISTRY_OPTIONS } from '../src/options.ts'
import { OptionValues, readConfigFile, resolveOptions, UsageError } from '../src/resolve.ts'

const base = { 'bootstrap-kind': 'static' }

function resolve(
  flags: Record<string, string | string[] | boolean | undefined>,
  env: NodeJS.ProcessEnv = {},
  file?: Record<string, unknown>
) {
  return new OptionValues(
    resolveOptions(REGISTRY_OPTIONS, {
      flags: { ...base, ...flags },
      env,
      ...(file === undefined ? {} : { file })
    })
  )
}

describe('option resolution', () => {
  it('gives Spegel’s defaults when nothing is set', () => {
    const values = resolve({})
    assert.equal(values.text('registry-addr'), ':5000')
    assert.equal(values.text('router-addr'), ':5001')
    assert.equal(values.text('metrics-addr'), ':9090')
    assert.equal(values.text('mirror-resolve-timeout'), '20ms')
    assert.equal(values.text('mirror-resolve-retries'), '3')
    assert.equal(values.text('containerd-namespace'), 'k8s.io')
    assert.equal(values.flag('debug-web-enabled'), true)
    assert.equal(values.source('registry-addr'), 'default')
  })

  it('takes the flag over the environment, the environment over the file, the file over the default', () => {
    const file = { 'registry-addr': ':1', 'router-addr': ':2', 'metrics-addr': ':3' }
    const env = { REGISTRY_ADDR: ':10', ROUTER_ADDR: ':20' }
    const values = resolve({ 'registry-addr': ':100' }, env, file)
    assert.deepEqual(
      ['registry-addr', 'router-addr', 'metrics-addr', 'containerd-sock'].map((f) => [
        values.text(f),
        values.source(f)
      ]),
      [
        [':100', 'flag'],
        [':20', 'environment'],
        [':3', 'config file'],
        ['/run/containerd/containerd.sock', 'default']
      ]
    )
  })

  it('takes KADMIRROR_<NAME> over Spegel’s unprefixed name', () => {
    assert.equal(
      resolve({}, { KADMIRROR_REGISTRY_ADDR: ':7', REGISTRY_ADDR: ':8' }).text('registry-addr'),
      ':7'
    )
  })

  it('reads lists from the environment comma-separated and from a file as arrays', () => {
    const env = { MIRRORED_REGISTRIES: 'https://docker.io,https://ghcr.io' }
    assert.deepEqual(resolve({}, env).list('mirrored-registries'), ['https://docker.io', 'https://ghcr.io'])
    assert.deepEqual(resolve({}, {}, { 'registry-filters': ['^a', '^b'] }).list('registry-filters'), [
      '^a',
      '^b'
    ])
  })

  it('reads booleans as flags without a value, as =false, and from the environment', () => {
    assert.equal(resolve({ 'debug-web-enabled': 'false' }).flag('debug-web-enabled'), false)
    assert.equal(resolve({ 'allow-loopback': true }).flag('allow-loopback'), true)
    assert.equal(resolve({}, { DEBUG_WEB_ENABLED: '0' }).flag('debug-web-enabled'), false)
  })

  it('names the flag, or the variable, and the value that does not parse', () => {
    assert.throws(
      () => resolve({ 'mirror-resolve-timeout': '20' }),
      /invalid value for --mirror-resolve-timeout: "20" is not a duration/
    )
    assert.throws(() => resolve({}, { METRICS_ADDR: 'nope' }), /invalid value for METRICS_ADDR: "nope"/)
    assert.throws(
      () => resolve({}, {}, { 'router-addr': 5001 }),
      /invalid value for config key router-addr: "5001"/
    )
    assert.throws(
      () => resolve({ 'registry-filters': ['('] }),
      /--registry-filters: "\(" is not a regular expression/
    )
    assert.throws(() => resolve({ 'bootstrap-kind': 'mdns' }), /"mdns" is not a bootstrap kind/)
  })

  it('requires --bootstrap-kind', () => {
    assert.throws(
      () => resolveOptions(REGISTRY_OPTIONS, { flags: {}, env: {} }),
      (err: unknown) =>
        err instanceof UsageError && /--bootstrap-kind \(or BOOTSTRAP_KIND\) is required/.test(err.message)
    )
  })

  it('refuses a config file key no option has', () => {
    assert.throws(
      () => resolve({}, {}, { 'registry-adr': ':5000' }),
      /unknown config file key "registry-adr"/
    )
  })

  describe('config files', () => {
    let dir: string
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'kadmirror-config-'))
    })
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true })
    })

    it('reads TOML and JSON with the flags’ names as keys', async () => {
      await writeFile(
        join(dir, 'a.toml'),
        'registry-addr = ":6000"\nmirrored-registries = ["https://docker.io"]\n'
      )
      await writeFile(join(dir, 'a.json'), '{"registry-addr": ":6001"}')
      assert.deepEqual(
        { ...(await readConfigFile(join(dir, 'a.toml'))) },
        {
          'registry-addr': ':6000',
          'mirrored-registries': ['https://docker.io']
        }
      )
      assert.deepEqual(await readConfigFile(join(dir, 'a.json')), { 'registry-addr': ':6001' })
    })

    it('says which file does not parse or cannot be read', async () => {
      await writeFile(join(dir, 'bad.toml'), 'registry-addr = \n')
      await writeFile(join(dir, 'list.json'), '[1]')
      await assert.rejects(readConfigFile(join(dir, 'bad.toml')), /bad\.toml is not valid TOML/)
      await assert.rejects(readConfigFile(join(dir, 'list.json')), /must be a table of option keys/)
      await assert.rejects(
        readConfigFile(join(dir, 'missing.toml')),
        /cannot read config file .*missing\.toml: ENOENT/
      )
    })
  })
})
