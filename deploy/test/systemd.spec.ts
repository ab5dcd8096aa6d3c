/**
 * GEP-0043's host mode: the systemd units pass `systemd-analyze verify` (Debian's systemd), their environment files
 * hold only options the commands take, with valid values, and the registry, bundled as the unit runs it, keeps
 * serving peer pulls inside a memory cgroup limited to the unit's MemoryMax.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { BOOTSTRAP_SERVER_OPTIONS, COMMANDS, GLOBAL_OPTIONS, resolveOptions } from '@kadmirror/daemon'
import { buildImage, digestOf } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { waitFor } from '@kadmirror/test-support'
import {
  allReady,
  bundledCli,
  type Daemon,
  freePorts,
  startDaemon,
  stopDaemons
} from '@kadmirror/test-support/daemons'

const run = promisify(execFile)
const unitsDir = join(dirname(dirname(fileURLToPath(import.meta.url))), 'systemd')
const UNITS = ['kadmirror.service', 'kadmirror-bootstrap.service']

/** Reads a systemd EnvironmentFile: KEY=VALUE lines, `#` comments. */
async function environmentFile(name: string): Promise<Record<string, string>> {
  const env: Record<string, string> = {}
  for (const line of (await readFile(join(unitsDir, name), 'utf8')).split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const match = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line)
    assert.ok(match !== null, `${name}: ${JSON.stringify(line)} is not KEY=VALUE`)
    env[match[1] as string] = (match[2] as string).replace(/^"(.*)"$/, '$1')
  }
  return env
}

/** The `[Service]`-style `Key=value` settings of a unit (last wins). */
async function unitSettings(name: string): Promise<Map<string, string>> {
  const settings = new Map<string, string>()
  for (const line of (await readFile(join(unitsDir, name), 'utf8')).split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (match !== null) settings.set(match[1] as string, match[2] as string)
  }
  return settings
}

/** A root directory holding the system's units, ours, and the files our units name. */
async function analyzeRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'kadmirror-systemd-'))
  await mkdir(join(root, 'usr', 'lib', 'systemd'), { recursive: true })
  await cp('/lib/systemd/system', join(root, 'usr', 'lib', 'systemd', 'system'), { recursive: true })
  await mkdir(join(root, 'etc', 'systemd', 'system'), { recursive: true })
  for (const unit of UNITS) await cp(join(unitsDir, unit), join(root, 'etc', 'systemd', 'system', unit))
  await mkdir(join(root, 'opt', 'kadmirror', 'nodejs', 'bin'), { recursive: true })
  await writeFile(join(root, 'opt', 'kadmirror', 'nodejs', 'bin', 'node'), '#!/bin/sh\n')
  await chmod(join(root, 'opt', 'kadmirror', 'nodejs', 'bin', 'node'), 0o755)
  return root
}

/** systemd-analyze verify's complaints about `unit` under `root` (empty when it has none). */
async function verify(root: string, unit: string): Promise<string> {
  try {
    const { stdout, stderr } = await run('systemd-analyze', [
      'verify',
      `--root=${root}`,
      `/etc/systemd/system/${unit}`
    ])
    return (stdout + stderr).trim()
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string }
    return `${stdout ?? ''}${stderr ?? ''}`.trim() || String(err)
  }
}

describe('the systemd units (host mode)', () => {
  describe('systemd-analyze verify', function () {
    this.timeout(60_000)
    let root: string

    before(async function () {
      if (!existsSync('/usr/bin/systemd-analyze') || !existsSync('/lib/systemd/system')) {
        console.log("      skipped: systemd-analyze is not installed (Debian's systemd package)")
        this.skip()
      }
      root = await analyzeRoot()
    })

    after(async () => {
      if (root !== undefined) await rm(root, { recursive: true, force: true })
    })

    for (const unit of UNITS)
      it(`finds nothing to report in ${unit}`, async () => {
        assert.equal(await verify(root, unit), '')
      })

    it('reports a misspelt key, so a clean verify means something', async () => {
      const text = (await readFile(join(unitsDir, 'kadmirror.service'), 'utf8')).replace(
        'MemoryMax=',
        'MemoryMaxx='
      )
      await writeFile(join(root, 'etc', 'systemd', 'system', 'misspelt.service'), text)
      assert.match(await verify(root, 'misspelt.service'), /Unknown key 'MemoryMaxx'/)
    })
  })

  it('starts after containerd and before kubelet, restarts always, under MemoryMax=100M, hardened', async () => {
    const unit = await readFile(join(unitsDir, 'kadmirror.service'), 'utf8')
    const settings = await unitSettings('kadmirror.service')
    assert.match(settings.get('After') ?? '', /containerd\.service/)
    assert.equal(settings.get('Before'), 'kubelet.service')
    assert.equal(settings.get('Restart'), 'always')
    assert.equal(settings.get('MemoryMax'), '100M')
    assert.equal(settings.get('EnvironmentFile'), '/etc/kadmirror/kadmirror.env')
    assert.equal(settings.get('ProtectSystem'), 'strict')
    assert.equal(settings.get('NoNewPrivileges'), 'yes')
    assert.deepEqual(settings.get('ReadWritePaths')?.split(' '), [
      '/var/lib/kadmirror',
      '/etc/containerd/certs.d'
    ])
    assert.ok(Number(settings.get('LimitNOFILE')) >= 65536)
    assert.doesNotMatch(unit, /^MemoryDenyWriteExecute=yes/m)
  })

  it("holds in kadmirror.env only options of registry or configuration, with valid values and GEP-0043's ports", async () => {
    const env = await environmentFile('kadmirror.env')
    const command = (name: string) => COMMANDS.find((c) => c.name === name)?.options ?? []
    const specs = [...GLOBAL_OPTIONS, ...command('registry'), ...command('configuration')]
    const known = new Set(specs.map((s) => s.env))
    assert.deepEqual(
      Object.keys(env).filter((name) => !known.has(name)),
      []
    )
    resolveOptions([...GLOBAL_OPTIONS, ...command('registry')], { flags: {}, env })
    resolveOptions([...GLOBAL_OPTIONS, ...command('configuration')], { flags: {}, env })
    assert.deepEqual(
      [env.REGISTRY_ADDR, env.ROUTER_ADDR, env.METRICS_ADDR, env.BOOTSTRAP_KIND],
      [':15500', ':15501', ':19090', 'http']
    )
    assert.equal(env.MIRROR_TARGETS, 'http://127.0.0.1:15500')
  })

  it('holds in bootstrap-server.env only options of bootstrap-server, with valid values', async () => {
    const env = await environmentFile('bootstrap-server.env')
    const known = new Set([...GLOBAL_OPTIONS, ...BOOTSTRAP_SERVER_OPTIONS].map((s) => s.env))
    assert.deepEqual(
      Object.keys(env).filter((name) => !known.has(name)),
      []
    )
    resolveOptions([...GLOBAL_OPTIONS, ...BOOTSTRAP_SERVER_OPTIONS], { flags: {}, env })
  })

  describe("under the unit's MemoryMax", function () {
    this.timeout(180_000)
    const cgroup = memoryCgroup()
    let dir: string
    let daemons: Daemon[] = []

    before(async function () {
      const reason = await cgroup.unavailable()
      if (reason !== undefined) {
        console.log(`      skipped: ${reason}`)
        this.skip()
      }
      dir = await mkdtemp(join(tmpdir(), 'kadmirror-memorymax-'))
    })

    after(async () => {
      await stopDaemons(daemons)
      await cgroup.remove()
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    })

    it('keeps serving verified peer pulls of 4 × 32 MiB, 4 at a time, with no OOM kill', async () => {
      const limitBytes = parseSize((await unitSettings('kadmirror.service')).get('MemoryMax') ?? '')
      await cgroup.create(limitBytes)
      const layers = Array.from({ length: 4 }, () => randomBytes(32 * 1024 * 1024))
      const image = buildImage({ layers })
      await mkdir(join(dir, 'provider', 'layout'), { recursive: true })
      await mkdir(join(dir, 'limited', 'layout'), { recursive: true })
      const store = await openOciLayoutStore({ directory: join(dir, 'provider', 'layout') })
      await store.addImage('registry.example.com/big/image:1', image)
      await store.close()
      const ports = await freePorts(6)
      const cli = await bundledCli()
      const router = (i: number) => `/ip4/127.0.0.1/tcp/${ports[i * 3 + 1]}`
      const spec = (i: number, name: string) => ({
        name,
        cli,
        store: join(dir, name, 'layout'),
        dataDir: join(dir, name, 'data'),
        ports: {
          registry: ports[i * 3] as number,
          router: ports[i * 3 + 1] as number,
          metrics: ports[i * 3 + 2] as number
        },
        peers: [router(1 - i)]
      })
      daemons = [
        await startDaemon(spec(0, 'provider')),
        await startDaemon({ ...spec(1, 'limited'), prefix: cgroup.joinPrefix() })
      ]
      await allReady(daemons)
      const limited = daemons[1] as Daemon
      const digests = layers.map((l) => digestOf(l))
      const blobUrl = (digest: string) =>
        `${limited.registryUrl}/v2/big/image/blobs/${digest}?ns=registry.example.com`
      // The provider advertises what its store holds a moment after it starts.
      for (const digest of digests)
        await waitFor(async () => (await fetch(blobUrl(digest), { method: 'HEAD' })).status === 200, 30_000)
      for (let round = 0; round < 3; round++) {
        const bodies = await Promise.all(
          digests.map(async (digest) => {
            const res = await fetch(blobUrl(digest))
            return { status: res.status, digest: digestOf(Buffer.from(await res.arrayBuffer())) }
          })
        )
        assert.deepEqual(
          bodies,
          digests.map((digest) => ({ status: 200, digest }))
        )
      }
      const usage = await cgroup.usage()
      console.log(
        `      cgroup limit ${mib(limitBytes)}: peak ${mib(usage.peakBytes)} (page cache included), anonymous ${mib(usage.anonBytes)} after, OOM kills ${usage.oomKills}`
      )
      assert.equal(usage.oomKills, 0)
      assert.equal(limited.process.exitCode, null)
    })
  })
})

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** `100M` / `1G` / bytes, as systemd reads MemoryMax (K, M, G are powers of 1024). */
function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/.exec(text)
  assert.ok(match !== null, `${text} is not a size`)
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2] as '' | 'K' | 'M' | 'G']
  return Number(match[1]) * unit
}

/** A memory cgroup of the test's own (v1 `memory` hierarchy or v2), removed at the end. */
function memoryCgroup() {
  const v1 = '/sys/fs/cgroup/memory'
  const v2 = '/sys/fs/cgroup'
  const name = `kadmirror-memorymax-${process.pid}`
  const isV1 = existsSync(join(v1, 'memory.limit_in_bytes'))
  const path = join(isV1 ? v1 : v2, name)
  return {
    async unavailable(): Promise<string | undefined> {
      if (process.getuid?.() !== 0) return 'a memory cgroup of its own needs root'
      if (
        !isV1 &&
        !(await readFile(join(v2, 'cgroup.subtree_control'), 'utf8').catch(() => '')).includes('memory')
      )
        return 'no writable memory cgroup (neither cgroup v1 memory nor v2 with the memory controller)'
      try {
        await mkdir(path)
        await rmdir(path)
      } catch (err) {
        return `cannot create a memory cgroup here: ${(err as Error).message}`
      }
      return undefined
    },
    async create(limitBytes: number): Promise<void> {
      await mkdir(path)
      await writeFile(join(path, isV1 ? 'memory.limit_in_bytes' : 'memory.max'), String(limitBytes))
      if (!isV1) await writeFile(join(path, 'memory.swap.max'), '0').catch(() => undefined)
    },
    /** A shell prefix that moves itself into the cgroup, then runs the command. */
    joinPrefix(): string[] {
      return ['/bin/sh', '-c', `echo $$ > ${join(path, 'cgroup.procs')} && exec "$@"`, 'sh']
    },
    /** The peak charge (page cache included), the anonymous memory now, and the OOM kills so far. */
    async usage(): Promise<{ peakBytes: number; anonBytes: number; oomKills: number }> {
      const read = (file: string) => readFile(join(path, file), 'utf8')
      const stat = (key: string, text: string) =>
        Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(text)?.[1] ?? 0)
      if (isV1) {
        const oom = stat('oom_kill', await read('memory.oom_control'))
        const anonBytes = stat('total_rss', await read('memory.stat'))
        return { peakBytes: Number(await read('memory.max_usage_in_bytes')), anonBytes, oomKills: oom }
      }
      const peak = await read('memory.peak').catch(() => read('memory.current'))
      const anonBytes = stat('anon', await read('memory.stat'))
      return { peakBytes: Number(peak), anonBytes, oomKills: stat('oom_kill', await read('memory.events')) }
    },
    async remove(): Promise<void> {
      if (existsSync(path)) await rmdir(path).catch(() => undefined)
    }
  }
}
