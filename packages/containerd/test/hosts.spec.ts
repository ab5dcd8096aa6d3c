import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cleanupMirrors, configureMirrors, InvalidMirrorConfigError } from '../src/index.ts'

const golden = (name: string): Promise<string> =>
  readFile(join(dirname(fileURLToPath(import.meta.url)), 'golden', name), 'utf8')

/** Every file under `dir` with its content, keyed by relative path. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name)
    out[relative(dir, path)] = entry.isFile() ? await readFile(path, 'utf8') : '<dir>'
  }
  return out
}

describe('hosts.toml mirror configuration', () => {
  let root: string
  let configPath: string

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'kadmirror-hosts-'))
    configPath = join(root, 'certs.d')
  })

  afterEach(async () => {
    await rm(root, { recursive: true, force: true })
  })

  async function hostsOf(registryDir: string): Promise<string> {
    return readFile(join(configPath, registryDir, 'hosts.toml'), 'utf8')
  }

  it('writes docker.io with registry-1.docker.io as server and the local mirror first', async () => {
    await configureMirrors({ configPath, registries: ['https://docker.io'] })
    assert.equal(await hostsOf('docker.io'), await golden('docker-io.toml'))
  })

  it('writes _default/hosts.toml without a server when every registry is mirrored', async () => {
    await configureMirrors({ configPath })
    assert.equal(await hostsOf('_default'), await golden('default.toml'))
    assert.deepEqual((await readdir(configPath)).sort(), ['_backup', '_default'])
  })

  it('drops the resolve capability when tag resolution is off, and keeps the registry port', async () => {
    await configureMirrors({ configPath, registries: ['http://127.0.0.1:5050'], resolveTags: false })
    assert.equal(await hostsOf('127.0.0.1:5050'), await golden('no-resolve.toml'))
  })

  it('writes every mirror target in order, with an Authorization header for credentials', async () => {
    await configureMirrors({
      configPath,
      registries: ['https://ghcr.io'],
      mirrorTargets: ['http://127.0.0.1:5000', 'http://10.0.0.2:5000'],
      credentials: { username: 'mirror', password: 'secret' }
    })
    assert.equal(await hostsOf('ghcr.io'), await golden('auth.toml'))
  })

  it('keeps the hosts of an existing file after ours, and the files next to it, when prepending', async () => {
    await mkdir(join(configPath, 'docker.io'), { recursive: true })
    await writeFile(join(configPath, 'docker.io', 'hosts.toml'), await golden('existing.toml'))
    await writeFile(join(configPath, 'docker.io', 'ca.crt'), 'certificate')
    await configureMirrors({ configPath, registries: ['https://docker.io'], prependExisting: true })
    assert.equal(await hostsOf('docker.io'), await golden('prepend.toml'))
    assert.equal(await readFile(join(configPath, 'docker.io', 'ca.crt'), 'utf8'), 'certificate')
  })

  it('replaces an existing file when not prepending', async () => {
    await mkdir(join(configPath, 'docker.io'), { recursive: true })
    await writeFile(join(configPath, 'docker.io', 'hosts.toml'), await golden('existing.toml'))
    await configureMirrors({ configPath, registries: ['https://docker.io'] })
    assert.equal(await hostsOf('docker.io'), await golden('docker-io.toml'))
  })

  it('restores exactly what was there on cleanup', async () => {
    await mkdir(join(configPath, 'docker.io'), { recursive: true })
    await mkdir(join(configPath, 'quay.io'), { recursive: true })
    await writeFile(join(configPath, 'docker.io', 'hosts.toml'), await golden('existing.toml'))
    await writeFile(join(configPath, 'docker.io', 'ca.crt'), 'certificate')
    await writeFile(join(configPath, 'quay.io', 'hosts.toml'), 'server = "https://quay.io"\n')
    const before = await snapshot(configPath)
    await configureMirrors({
      configPath,
      registries: ['https://docker.io', 'https://ghcr.io'],
      prependExisting: true
    })
    assert.notDeepEqual(await snapshot(configPath), before)
    assert.equal(await cleanupMirrors({ configPath }), true)
    assert.deepEqual(await snapshot(configPath), before)
  })

  it('keeps the first backup when configured twice, so cleanup still restores the original', async () => {
    await mkdir(join(configPath, 'docker.io'), { recursive: true })
    await writeFile(join(configPath, 'docker.io', 'hosts.toml'), await golden('existing.toml'))
    const before = await snapshot(configPath)
    await configureMirrors({ configPath, registries: ['https://docker.io'] })
    await configureMirrors({ configPath, registries: ['https://ghcr.io'] })
    assert.deepEqual((await readdir(configPath)).sort(), ['_backup', 'ghcr.io'])
    await cleanupMirrors({ configPath })
    assert.deepEqual(await snapshot(configPath), before)
  })

  it('answers false to a cleanup with nothing to restore', async () => {
    assert.equal(await cleanupMirrors({ configPath }), false)
    await configureMirrors({ configPath })
    assert.equal(await cleanupMirrors({ configPath }), true)
    assert.equal(await cleanupMirrors({ configPath }), false)
  })

  for (const [what, config] of [
    ['a registry without scheme', { registries: ['docker.io'] }],
    ['a registry with a path', { registries: ['https://docker.io/library'] }],
    ['a registry listed twice', { registries: ['https://docker.io', 'https://docker.io'] }],
    ['two wildcards', { registries: ['_default', '*'] }],
    ['a mirror target with credentials in it', { mirrorTargets: ['http://u:p@127.0.0.1:5000'] }],
    ['a mirror target of another scheme', { mirrorTargets: ['ftp://127.0.0.1:5000'] }],
    ['no mirror target', { mirrorTargets: [] }]
  ] as const) {
    it(`refuses ${what} and changes nothing on disk`, async () => {
      await mkdir(join(configPath, 'docker.io'), { recursive: true })
      await writeFile(
        join(configPath, 'docker.io', 'hosts.toml'),
        'server = "https://registry-1.docker.io"\n'
      )
      const before = await snapshot(configPath)
      await assert.rejects(configureMirrors({ configPath, ...config }), InvalidMirrorConfigError)
      assert.deepEqual(await snapshot(configPath), before)
    })
  }
})
