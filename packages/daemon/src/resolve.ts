/**
 * Resolves a command's option values from their sources, in precedence order: the flag, the environment
 * (`KADMIRROR_<NAME>`, then Spegel's unprefixed `<NAME>`), the config file, the default. Every value is checked
 * by its option's parser; an error names the flag, the source and the value.
 */
import { readFile } from 'node:fs/promises'
import { parse as parseToml } from 'smol-toml'
import type { OptionSpec } from './options.ts'
import { InvalidValueError, parseBoolean, splitList } from './values.ts'

/** A resolved option value: text, a list of texts, or a boolean. */
export type OptionValue = string | string[] | boolean

/** Where a value came from. */
export type ValueSource = 'flag' | 'environment' | 'config file' | 'default'

/** Values of one command, by flag name. */
export type ResolvedOptions = Map<string, { value: OptionValue; source: ValueSource }>

/** A usage mistake: a bad value, a missing required option, an unknown config key. The CLI exits 2. */
export class UsageError extends Error {
  override name = 'UsageError'
  readonly code = 'ERR_USAGE'
}

/** What the sources hold, before resolution. */
export interface OptionSources {
  /** Values given as flags (commander's, by flag name; `true` for a boolean flag without value). */
  flags: Record<string, string | string[] | boolean | undefined>
  env: NodeJS.ProcessEnv
  /** The config file's values, by flag name. */
  file?: Record<string, unknown>
}

function fromEnv(spec: OptionSpec, env: NodeJS.ProcessEnv): { value: string; name: string } | undefined {
  for (const name of [`KADMIRROR_${spec.env}`, spec.env]) {
    const value = env[name]
    if (value !== undefined && value !== '') return { value, name }
  }
  return undefined
}

/** A config file value as flag text: strings, numbers and booleans; arrays of them for lists. */
function fileValue(spec: OptionSpec, value: unknown): OptionValue {
  const scalar = (item: unknown): string => {
    if (typeof item === 'string' || typeof item === 'number' || typeof item === 'boolean') return String(item)
    throw new InvalidValueError(`${JSON.stringify(item)} is not a string, number or boolean`)
  }
  if (spec.list) return Array.isArray(value) ? value.map(scalar) : splitList(scalar(value))
  if (Array.isArray(value)) throw new InvalidValueError('takes one value, not a list')
  return scalar(value)
}

/** The raw value of one option and where it came from, or undefined when no source has it. */
function rawValue(
  spec: OptionSpec,
  sources: OptionSources
): { value: OptionValue; source: ValueSource; where: string } | undefined {
  const flag = sources.flags[spec.flag]
  if (flag !== undefined) return { value: flag, source: 'flag', where: `--${spec.flag}` }
  const env = fromEnv(spec, sources.env)
  if (env !== undefined)
    return { value: spec.list ? splitList(env.value) : env.value, source: 'environment', where: env.name }
  if (sources.file !== undefined && spec.flag in sources.file)
    return {
      value: fileValue(spec, sources.file[spec.flag]),
      source: 'config file',
      where: `config key ${spec.flag}`
    }
  if (spec.default !== undefined) return { value: spec.default, source: 'default', where: `--${spec.flag}` }
  return undefined
}

/** Checks and normalises one value: booleans parsed, each list item checked. */
function checked(spec: OptionSpec, value: OptionValue): OptionValue {
  if (spec.boolean) return typeof value === 'boolean' ? value : parseBoolean(String(value))
  if (spec.list) {
    const items = Array.isArray(value) ? value : [String(value)]
    for (const item of items) spec.check?.(item)
    return items
  }
  const text = Array.isArray(value) ? value.join(',') : String(value)
  spec.check?.(text)
  return text
}

/**
 * Resolves every option of `specs` from `sources`.
 * @throws {UsageError} for a value that does not parse, a required option with no value, or a config file key no
 *   option has.
 */
export function resolveOptions(specs: readonly OptionSpec[], sources: OptionSources): ResolvedOptions {
  if (sources.file !== undefined) {
    const known = new Set(specs.map((spec) => spec.flag))
    const unknown = Object.keys(sources.file).filter((key) => !known.has(key))
    if (unknown.length > 0)
      throw new UsageError(`unknown config file key ${unknown.map((k) => JSON.stringify(k)).join(', ')}`)
  }
  const resolved: ResolvedOptions = new Map()
  for (const spec of specs) {
    const raw = rawValue(spec, sources)
    if (raw === undefined) {
      if (spec.required) throw new UsageError(`--${spec.flag} (or ${spec.env}) is required`)
      continue
    }
    try {
      resolved.set(spec.flag, { value: checked(spec, raw.value), source: raw.source })
    } catch (err) {
      if (!(err instanceof InvalidValueError)) throw err
      throw new UsageError(`invalid value for ${raw.where}: ${err.message}`)
    }
  }
  return resolved
}

/**
 * Reads a config file: TOML, or JSON when the name ends in `.json`; keys are flag names.
 * @throws {UsageError} when it cannot be read or parsed, or is not a table of keys.
 */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new UsageError(
      `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
    )
  }
  let value: unknown
  try {
    value = path.endsWith('.json') ? JSON.parse(text) : parseToml(text)
  } catch (err) {
    const kind = path.endsWith('.json') ? 'JSON' : 'TOML'
    throw new UsageError(`config file ${path} is not valid ${kind}: ${(err as Error).message.split('\n')[0]}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new UsageError(`config file ${path} must be a table of option keys`)
  return value as Record<string, unknown>
}

/** Typed access to resolved values. */
export class OptionValues {
  private readonly values: ResolvedOptions

  constructor(values: ResolvedOptions) {
    this.values = values
  }

  text(flag: string): string | undefined {
    const value = this.values.get(flag)?.value
    return typeof value === 'string' && value !== '' ? value : undefined
  }

  list(flag: string): string[] {
    const value = this.values.get(flag)?.value
    return Array.isArray(value) ? value : []
  }

  flag(flag: string): boolean {
    return this.values.get(flag)?.value === true
  }

  source(flag: string): ValueSource | undefined {
    return this.values.get(flag)?.source
  }
}
