#!/usr/bin/env node
/**
 * The `kadmirror` command line: Spegel's subcommands and flags (and a few of ours), parsed with commander from the
 * one option definition in options.ts. A usage mistake prints one line and the usage line and exits 2; a failure
 * while running prints one line and exits 1; `--help` prints usage and exits 0. Never a stack trace.
 */
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Command, CommanderError, Option } from 'commander'
import { type Logger, pino } from 'pino'
import {
  BOOTSTRAP_SERVER_OPTIONS,
  CLEANUP_OPTIONS,
  CLEANUP_WAIT_OPTIONS,
  CONFIGURATION_OPTIONS,
  GENERATE_PSK_OPTIONS,
  GLOBAL_OPTIONS,
  type OptionSpec,
  REGISTRY_OPTIONS,
  VERSION_OPTIONS
} from './options.ts'
import { OptionValues, readConfigFile, resolveOptions, UsageError } from './resolve.ts'
import { execTuned, tuneRunningProcess } from './runtime.ts'
import { parseLogLevel } from './values.ts'
import { runVersion } from './version.ts'

/** One subcommand. */
export interface CommandSpec {
  name: string
  aliases?: string[]
  description: string
  options: readonly OptionSpec[]
  /** Takes `--config <file>` (TOML or JSON with the flags' names as keys). */
  configFile?: boolean
  run(values: OptionValues, log: Logger): Promise<void> | void
}

// The runners load their modules when a command runs: `--help`, `version` and usage errors do not load libp2p.
const commands = (): Promise<typeof import('./commands.ts')> => import('./commands.ts')
const runConfiguration: CommandSpec['run'] = async (values, log) =>
  (await commands()).runConfiguration(values, log)
const runCleanup: CommandSpec['run'] = async (values, log) => (await commands()).runCleanup(values, log)
const runCleanupWait: CommandSpec['run'] = async (values, log) =>
  (await commands()).runCleanupWait(values, log)
const runBootstrapServer: CommandSpec['run'] = async (values, log) =>
  (await commands()).runBootstrapServer(values, log)
const runRegistry: CommandSpec['run'] = async (values, log) =>
  (await import('./registry-command.ts')).runRegistry(values, log)

/** Every subcommand of `kadmirror`. */
export const COMMANDS: readonly CommandSpec[] = [
  { name: 'version', description: 'Print version information.', options: VERSION_OPTIONS, run: runVersion },
  {
    name: 'generate-psk',
    description:
      'Print a new private-network key (a swarm key) for --private-network-key-file; keep it as a Secret, mode 0600.',
    options: GENERATE_PSK_OPTIONS,
    run: async () => {
      process.stdout.write((await import('@kadmirror/routing/access')).generatePrivateNetworkKey())
    }
  },
  {
    name: 'configuration',
    aliases: ['configure'],
    description: 'Write containerd’s mirror configuration (hosts.toml), keeping a backup of what was there.',
    options: CONFIGURATION_OPTIONS,
    run: runConfiguration
  },
  {
    name: 'registry',
    description: 'Run the node: the registry mirror, the router and the advertiser.',
    options: REGISTRY_OPTIONS,
    configFile: true,
    run: runRegistry
  },
  {
    name: 'cleanup',
    description: 'Restore containerd’s mirror configuration, then serve /readyz until stopped.',
    options: CLEANUP_OPTIONS,
    run: runCleanup
  },
  {
    name: 'cleanup-wait',
    description: 'Wait until the cleanup pods report ready, a number of probes in a row.',
    options: CLEANUP_WAIT_OPTIONS,
    run: runCleanupWait
  },
  {
    name: 'bootstrap-server',
    description: 'Run the external HTTPS bootstrapper nodes register with (GEP-0043).',
    options: BOOTSTRAP_SERVER_OPTIONS,
    run: runBootstrapServer
  }
]

/** The attribute commander stores a flag under (`registry-addr` → `registryAddr`). */
const attributeOf = (flag: string): string => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())

function helpOf(spec: OptionSpec): string {
  const since = spec.since === undefined ? '' : ` (${spec.since})`
  const fallback = spec.default === undefined ? '' : ` (default: ${spec.default})`
  return `${spec.description}${since} [env: ${spec.env}]${fallback}`
}

function commanderOption(spec: OptionSpec): Option {
  const syntax = spec.boolean ? '[bool]' : spec.list ? '<values...>' : '<value>'
  return new Option(`--${spec.flag} ${syntax}`, helpOf(spec))
}

/** What the command line gave for each option of `specs`. */
function flagsOf(
  specs: readonly OptionSpec[],
  opts: Record<string, unknown>
): Record<string, string | string[] | boolean | undefined> {
  const flags: Record<string, string | string[] | boolean | undefined> = {}
  for (const spec of specs)
    flags[spec.flag] = opts[attributeOf(spec.flag)] as string | string[] | boolean | undefined
  return flags
}

/** A pino logger writing JSON lines to stderr at `level`. */
export function createLogger(level: string): Logger {
  return pino(
    {
      level: parseLogLevel(level).toLowerCase(),
      base: { pid: process.pid },
      // Spegel's slog JSON names levels: "level":"INFO".
      formatters: { level: (label) => ({ level: label.toUpperCase() }) }
    },
    pino.destination(2)
  )
}

async function runCommand(spec: CommandSpec, command: Command, env: NodeJS.ProcessEnv): Promise<void> {
  const opts = command.optsWithGlobals()
  const global = resolveOptions(GLOBAL_OPTIONS, { flags: flagsOf(GLOBAL_OPTIONS, opts), env })
  const file =
    spec.configFile && typeof opts.config === 'string' ? await readConfigFile(opts.config) : undefined
  const values = new OptionValues(
    resolveOptions(spec.options, {
      flags: flagsOf(spec.options, opts),
      env,
      ...(file === undefined ? {} : { file })
    })
  )
  const log = createLogger(String(global.get('log-level')?.value ?? 'INFO'))
  if (spec.name === 'registry') tuneRunningProcess()
  await spec.run(values, log)
}

/** Builds the program from {@link COMMANDS}. */
function program(env: NodeJS.ProcessEnv, write: (text: string) => void): Command {
  const root = new Command('kadmirror')
    .description('Peer-to-peer container image distribution for clusters; a drop-in for Spegel.')
    .exitOverride()
    .configureOutput({ writeOut: write, writeErr: () => {} })
  for (const spec of GLOBAL_OPTIONS) root.addOption(commanderOption(spec))
  for (const spec of COMMANDS) {
    const command = root.command(spec.name).description(spec.description).allowExcessArguments(false)
    for (const alias of spec.aliases ?? []) command.alias(alias)
    for (const option of spec.options) command.addOption(commanderOption(option))
    if (spec.configFile)
      command.option(
        '--config <file>',
        'A TOML or JSON file with option values, keyed by flag name (flags and environment win).'
      )
    command.action(async () => runCommand(spec, command, env))
  }
  return root
}

/** The usage line of the command named in `argv`, or of the program. */
function usageLine(root: Command, argv: readonly string[]): string {
  const name = argv.find((arg) => !arg.startsWith('-'))
  const command = root.commands.find((c) => c.name() === name || c.aliases().includes(name ?? ''))
  return `Usage: kadmirror ${command === undefined ? root.usage() : `${command.name()} ${command.usage()}`}`
}

/**
 * Runs the CLI on `argv` (without `node` and the script) and resolves the exit code: 0 done, 1 failed, 2 usage.
 * Writes help to `stdout`, one-line errors to `stderr`.
 */
export async function main(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  io: { stdout: (text: string) => void; stderr: (text: string) => void } = {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text)
  }
): Promise<number> {
  const root = program(env, io.stdout)
  const command = argv.find((arg) => !arg.startsWith('-')) ?? ''
  const prefix = command === '' ? 'kadmirror' : `kadmirror ${command}`
  try {
    if (!argv.some((arg) => !arg.startsWith('-')) && !argv.some((a) => a === '-h' || a === '--help'))
      throw new UsageError(
        'a command is required (version, configuration, registry, cleanup, cleanup-wait, bootstrap-server)'
      )
    await root.parseAsync([...argv], { from: 'user' })
    return 0
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0
      io.stderr(`${prefix}: ${err.message.replace(/^error: /, '')}\n${usageLine(root, argv)}\n`)
      return 2
    }
    if (err instanceof UsageError) {
      io.stderr(`${prefix}: ${err.message}\n${usageLine(root, argv)}\n`)
      return 2
    }
    io.stderr(`${prefix}: ${(err as Error).message ?? String(err)}\n`)
    return 1
  }
}

const invoked =
  process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
if (invoked) {
  if (process.argv.slice(2).find((arg) => !arg.startsWith('-')) === 'registry') execTuned()
  process.exit(await main(process.argv.slice(2)))
}
