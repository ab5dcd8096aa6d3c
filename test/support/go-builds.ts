/**
 * Builds the reference systems the interop suite and bench/compare run beside kadmirror, from source, at test
 * time: Spegel from the archives in ../shared/anchors (never copied into the project) and containerd 2.x from the
 * Go module proxy (Debian ships 1.6, which emits no content events, so Spegel advertises nothing new on it).
 * Built once into a cache directory (`KADMIRROR_BUILD_CACHE`, default ~/.cache/kadmirror) and reused.
 */
import { execFile } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** The containerd 2.x release built for the suites (from the Go module proxy). */
export const CONTAINERD2_VERSION = 'v2.3.4'
/** Spegel sources, by name: the latest release and main as of the anchors. */
export const SPEGEL_SOURCES = {
  'v0.7.4': 'spegel-v0.7.4',
  main: 'spegel-main-b8c715a'
} as const
export type SpegelVersion = keyof typeof SPEGEL_SOURCES

const ANCHORS = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), '..', 'shared', 'anchors')
const BUILD_TIMEOUT_MS = 15 * 60_000

function cacheDir(): string {
  return process.env.KADMIRROR_BUILD_CACHE ?? join(homedir(), '.cache', 'kadmirror')
}

/** Why Go builds cannot run here, or undefined. */
export async function goUnavailable(): Promise<string | undefined> {
  try {
    await run('go', ['version'])
  } catch {
    return 'Go is not installed (it builds Spegel and containerd 2.x from source)'
  }
  if (!existsSync(ANCHORS)) return `Spegel's sources are not at ${ANCHORS}`
  return undefined
}

/** Builds into a temporary name and renames, so an interrupted build leaves nothing that looks finished. */
async function cached(name: string, build: (out: string) => Promise<void>): Promise<string> {
  const out = join(cacheDir(), name)
  if (existsSync(out)) return out
  await mkdir(cacheDir(), { recursive: true })
  const partial = await mkdtemp(join(cacheDir(), `${name}.partial-`))
  try {
    await build(partial)
    await rename(partial, out)
  } catch (err) {
    await rm(partial, { recursive: true, force: true })
    throw err
  }
  return out
}

const goEnv = (extra: Record<string, string> = {}) => ({ ...process.env, GOTOOLCHAIN: 'local', ...extra })

/** Spegel's binary built from the anchors' `version`; resolves its path. */
export async function buildSpegel(version: SpegelVersion = 'main'): Promise<string> {
  const source = SPEGEL_SOURCES[version]
  const dir = await cached(`spegel-${version}`, async (out) => {
    await run('tar', ['-xzf', join(ANCHORS, `${source}.tar.gz`), '-C', out])
    await run('go', ['build', '-o', join(out, 'spegel'), '.'], {
      cwd: join(out, source),
      env: goEnv(),
      timeout: BUILD_TIMEOUT_MS
    })
    await rm(join(out, source), { recursive: true, force: true })
  })
  return join(dir, 'spegel')
}

/** containerd 2.x and its ctr, built from the Go module proxy; resolves their paths. */
export async function buildContainerd2(): Promise<{ containerd: string; ctr: string }> {
  const dir = await cached(`containerd-${CONTAINERD2_VERSION}`, async (out) => {
    await run(
      'go',
      [
        'install',
        `github.com/containerd/containerd/v2/cmd/containerd@${CONTAINERD2_VERSION}`,
        `github.com/containerd/containerd/v2/cmd/ctr@${CONTAINERD2_VERSION}`
      ],
      { env: goEnv({ GOBIN: out }), timeout: BUILD_TIMEOUT_MS }
    )
  })
  return { containerd: join(dir, 'containerd'), ctr: join(dir, 'ctr') }
}

/** The Helm release the chart is checked with (installable as a Go module). */
export const HELM_VERSION = 'v4.3.1'

/** `helm`, built from the Go module proxy; resolves its path. */
export async function buildHelm(): Promise<string> {
  const dir = await cached(`helm-${HELM_VERSION}`, async (out) => {
    await run('go', ['install', `helm.sh/helm/v4/cmd/helm@${HELM_VERSION}`], {
      env: goEnv({ GOBIN: out }),
      timeout: BUILD_TIMEOUT_MS
    })
  })
  return join(dir, 'helm')
}

/** Builds the Go program in `sourceDir` (a module of the project's own) into the cache; resolves its path. */
export async function buildGoProgram(sourceDir: string, name: string): Promise<string> {
  const out = await mkdtemp(join(cacheDir(), `${name}-`))
  await run('go', ['build', '-o', join(out, name), '.'], {
    cwd: sourceDir,
    env: goEnv(),
    timeout: BUILD_TIMEOUT_MS
  })
  process.once('exit', () => rmSync(out, { recursive: true, force: true }))
  return join(out, name)
}
