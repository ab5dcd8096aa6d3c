/**
 * containerd's registry mirror configuration: one `hosts.toml` per mirrored registry under the registry config
 * path (`/etc/containerd/certs.d/<registry>/hosts.toml`), pointing containerd at the mirror first. What was
 * there before is moved to `_backup/` and restored exactly by {@link cleanupMirrors} (Spegel's layout, so an
 * operator can switch between the two).
 */
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { parse, stringify } from 'smol-toml'

/** containerd's default registry config path. */
export const DEFAULT_REGISTRY_CONFIG_PATH = '/etc/containerd/certs.d'
/** The mirror a node's containerd uses by default: its own kadmirror. */
export const DEFAULT_MIRROR_TARGET = 'http://127.0.0.1:5000'
/** Where the configuration found before is kept, inside the config path. */
export const BACKUP_DIR = '_backup'
/** The directory name containerd reads for every registry without its own. */
export const DEFAULT_HOST_DIR = '_default'
/** Dial timeout written for each mirror host (as Spegel; containerd ≥ 1.7 reads it, 1.6 ignores it). */
export const DIAL_TIMEOUT = '200ms'

const WILDCARDS = new Set(['_default', '*'])

/** A bad registry or mirror URL. */
export class InvalidMirrorConfigError extends Error {
  override name = 'InvalidMirrorConfigError'
}

/** Options of {@link configureMirrors}. */
export interface MirrorConfig {
  /** containerd's registry config path. Default `/etc/containerd/certs.d`. */
  configPath?: string
  /**
   * Registries to mirror, as URLs (`https://docker.io`, `http://10.0.0.1:5050`). Empty (default), `_default` or
   * `*` mirrors every registry through `_default/hosts.toml`.
   */
  registries?: readonly string[]
  /** Mirrors containerd asks first, in order. Default `['http://127.0.0.1:5000']`. */
  mirrorTargets?: readonly string[]
  /** Let containerd resolve tags through the mirror (`resolve` capability). Default true. */
  resolveTags?: boolean
  /** Keep the hosts of an existing hosts.toml after ours (and the files next to it, such as certificates). Default false. */
  prependExisting?: boolean
  /** Basic-auth credentials containerd sends to the mirror. */
  credentials?: { username: string; password: string }
}

interface RegistryUrl {
  /** Directory name: host[:port], or `_default`. */
  dir: string
  /** The `server` value, or undefined for `_default`. */
  server: string | undefined
}

function parseUrl(value: string, what: string): URL {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidMirrorConfigError(`${what} ${JSON.stringify(value)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidMirrorConfigError(`${what} ${JSON.stringify(value)} must use http or https`)
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new InvalidMirrorConfigError(
      `${what} ${JSON.stringify(value)} must have no path, query or fragment`
    )
  }
  if (url.username !== '' || url.password !== '') {
    throw new InvalidMirrorConfigError(`${what} ${JSON.stringify(value)} must not carry credentials`)
  }
  return url
}

/** The registries to write, validated; `_default` alone when every registry is mirrored. */
export function parseMirroredRegistries(registries: readonly string[] = []): RegistryUrl[] {
  if (registries.filter((r) => WILDCARDS.has(r)).length > 1) {
    throw new InvalidMirrorConfigError('registries name the wildcard more than once')
  }
  const out: RegistryUrl[] = []
  const seen = new Set<string>()
  for (const registry of registries.length === 0 ? ['_default'] : registries) {
    const entry: RegistryUrl = WILDCARDS.has(registry)
      ? { dir: DEFAULT_HOST_DIR, server: undefined }
      : (() => {
          const url = parseUrl(registry, 'registry')
          const server =
            url.host === 'docker.io' ? 'https://registry-1.docker.io' : `${url.protocol}//${url.host}`
          return { dir: url.host, server }
        })()
    if (seen.has(entry.dir)) throw new InvalidMirrorConfigError(`registry ${entry.dir} is listed twice`)
    seen.add(entry.dir)
    out.push(entry)
  }
  return out
}

/**
 * The hosts.toml text for one registry: `server` (none for `_default`), then one `[host."<target>"]` per mirror
 * target with the capabilities and dial timeout (and an Authorization header with credentials), then the
 * hosts of `existing` (an earlier hosts.toml's text) that are not targets already.
 * @throws {InvalidMirrorConfigError} for a bad target URL or an existing file that is not TOML.
 */
export function renderHostsToml(
  server: string | undefined,
  mirrorTargets: readonly string[],
  options: { resolveTags?: boolean; credentials?: MirrorConfig['credentials']; existing?: string } = {}
): string {
  const capabilities = options.resolveTags === false ? ['pull'] : ['pull', 'resolve']
  const host: Record<string, Record<string, unknown>> = {}
  for (const target of mirrorTargets) {
    const url = parseUrl(target, 'mirror target')
    const entry: Record<string, unknown> = { capabilities, dial_timeout: DIAL_TIMEOUT }
    if (options.credentials !== undefined) {
      const token = Buffer.from(`${options.credentials.username}:${options.credentials.password}`).toString(
        'base64'
      )
      entry.header = { Authorization: `Basic ${token}` }
    }
    host[`${url.protocol}//${url.host}`] = entry
  }
  if (options.existing !== undefined) {
    let parsed: Record<string, unknown>
    try {
      parsed = parse(options.existing) as Record<string, unknown>
    } catch (err) {
      throw new InvalidMirrorConfigError(`the existing hosts.toml is not TOML: ${(err as Error).message}`)
    }
    const existingHosts = parsed.host
    if (typeof existingHosts === 'object' && existingHosts !== null) {
      for (const [name, value] of Object.entries(existingHosts)) {
        if (!(name in host)) host[name] = value as Record<string, unknown>
      }
    }
  }
  const document: Record<string, unknown> = {}
  if (server !== undefined) document.server = server
  document.host = host
  return `${stringify(document).trim()}\n`
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return false
    throw err
  }
}

async function clearExceptBackup(configPath: string): Promise<void> {
  for (const entry of await readdir(configPath)) {
    if (entry !== BACKUP_DIR) await rm(join(configPath, entry), { recursive: true, force: true })
  }
}

async function copyTree(from: string, to: string, skip: (path: string) => boolean): Promise<void> {
  for (const entry of await readdir(from, { withFileTypes: true, recursive: true })) {
    const source = join(entry.parentPath, entry.name)
    if (!entry.isFile() || skip(source)) continue
    const target = join(to, relative(from, source))
    await mkdir(dirname(target), { recursive: true })
    await copyFile(source, target)
  }
}

/**
 * Points containerd at the mirror: moves what is under `configPath` to `_backup/` (once; a second run keeps the
 * first backup), clears the rest, and writes `<registry>/hosts.toml` for each mirrored registry. Resolves with
 * the files written.
 * @throws {InvalidMirrorConfigError} for bad URLs, before anything on disk changes.
 */
export async function configureMirrors(config: MirrorConfig = {}): Promise<string[]> {
  const configPath = config.configPath ?? DEFAULT_REGISTRY_CONFIG_PATH
  const registries = parseMirroredRegistries(config.registries)
  const targets = config.mirrorTargets ?? [DEFAULT_MIRROR_TARGET]
  if (targets.length === 0) throw new InvalidMirrorConfigError('at least one mirror target is needed')
  // Validate every target before touching the disk.
  renderHostsToml(undefined, targets)

  await mkdir(configPath, { recursive: true })
  const backup = join(configPath, BACKUP_DIR)
  if (!(await exists(backup))) {
    const entries = await readdir(configPath)
    await mkdir(backup)
    for (const entry of entries) await rename(join(configPath, entry), join(backup, entry))
  }
  await clearExceptBackup(configPath)

  const written: string[] = []
  for (const registry of registries) {
    const previous = join(backup, registry.dir, 'hosts.toml')
    let existing: string | undefined
    if (config.prependExisting === true && (await exists(previous))) {
      existing = await readFile(previous, 'utf8')
      // Files next to the old hosts.toml (certificates it names) are kept too.
      await copyTree(join(backup, registry.dir), join(configPath, registry.dir), (path) => path === previous)
    }
    const text = renderHostsToml(registry.server, targets, {
      ...(config.resolveTags === undefined ? {} : { resolveTags: config.resolveTags }),
      ...(config.credentials === undefined ? {} : { credentials: config.credentials }),
      ...(existing === undefined ? {} : { existing })
    })
    const file = join(configPath, registry.dir, 'hosts.toml')
    await mkdir(dirname(file), { recursive: true })
    await writeFile(file, text, { mode: 0o644 })
    written.push(file)
  }
  return written
}

/**
 * Restores what {@link configureMirrors} replaced: removes everything under `configPath` but `_backup/`, moves
 * the backup's content back, and removes `_backup/`. Resolves false when there was no backup (never configured,
 * or already cleaned up).
 */
export async function cleanupMirrors(options: { configPath?: string } = {}): Promise<boolean> {
  const configPath = options.configPath ?? DEFAULT_REGISTRY_CONFIG_PATH
  const backup = join(configPath, BACKUP_DIR)
  if (!(await exists(backup))) return false
  await clearExceptBackup(configPath)
  for (const entry of await readdir(backup)) await rename(join(backup, entry), join(configPath, entry))
  await rm(backup, { recursive: true, force: true })
  return true
}
