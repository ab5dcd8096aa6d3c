// The published packages as a Node service gets them: each publishable package packed with pnpm (workspace
// versions resolved, publishConfig applied), the tarballs installed with plain npm into a fresh project outside the
// workspace, then the mirror README's example and `kadmirror version` run from there.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const PUBLISHED = ['oci', 'store', 'routing', 'containerd', 'mirror', 'daemon']

/** The pnpm the workspace runs with (the one on PATH, or .tools/pnpm), or undefined. */
function pnpmPath(): string | undefined {
  const tools = join(root, '.tools', 'pnpm', 'node_modules', '.bin', 'pnpm')
  if (existsSync(tools)) return tools
  for (const dir of (process.env.PATH ?? '').split(':'))
    if (existsSync(join(dir, 'pnpm'))) return join(dir, 'pnpm')
  return undefined
}

describe('published packages installed with npm outside the workspace', function () {
  this.timeout(300_000)
  let dir: string
  const pnpm = pnpmPath()

  before(async function () {
    const built = PUBLISHED.every((name) => existsSync(join(root, 'packages', name, 'dist', 'index.js')))
    if (pnpm === undefined || !built) {
      console.log(
        `      skipped: ${pnpm === undefined ? 'pnpm is not installed' : 'the packages are not built (pnpm run build)'}`
      )
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-packages-'))
    for (const name of PUBLISHED)
      await run(pnpm as string, ['pack', '--pack-destination', join(dir, 'packs')], {
        cwd: join(root, 'packages', name)
      })
    const project = join(dir, 'service')
    await mkdir(project, { recursive: true })
    await writeFile(
      join(project, 'package.json'),
      JSON.stringify({ name: 'a-service', private: true, type: 'module' })
    )
    const tarballs = (await readdir(join(dir, 'packs'))).map((file) => join(dir, 'packs', file))
    await run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs], {
      cwd: project
    })
  })

  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('packs every publishable package with its workspace dependencies resolved to versions', async () => {
    const manifest = JSON.parse(
      await readFile(join(dir, 'service', 'node_modules', '@kadmirror', 'mirror', 'package.json'), 'utf8')
    )
    assert.equal(manifest.dependencies['@kadmirror/routing'], manifest.version)
    assert.equal(manifest.exports['.'].default, './dist/index.js')
  })

  it('runs the mirror README’s example from the installed packages', async () => {
    const readme = await readFile(join(root, 'packages', 'mirror', 'README.md'), 'utf8')
    const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1] as string
    await writeFile(join(dir, 'service', 'example.mts'), example)
    const { stdout } = await run(process.execPath, ['example.mts'], { cwd: join(dir, 'service') })
    assert.match(stdout, /manifest 200 \(peer\)/)
    assert.match(stdout, /BLOB_UNKNOWN/)
  })

  it('runs `kadmirror version` from the installed daemon', async () => {
    const { stdout } = await run(
      join(dir, 'service', 'node_modules', '.bin', 'kadmirror'),
      ['version', '--format', 'json'],
      {
        cwd: join(dir, 'service')
      }
    )
    assert.equal(JSON.parse(stdout).version, '0.1.0')
  })
})
