/**
 * The README's option tables, generated from the option definitions (options.ts) so the two cannot drift: a test
 * compares each table in the README with {@link optionsTable}; `node src/options-doc.ts` rewrites them in place.
 */

import { realpathSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { COMMANDS } from './cli.ts'
import { GLOBAL_OPTIONS, type OptionSpec } from './options.ts'

const escapeCell = (text: string): string => text.replaceAll('|', '\\|')

/** A markdown table of options: flag, environment variables, default, what it does. */
export function optionsTable(specs: readonly OptionSpec[]): string {
  const rows = specs.map((spec) => {
    const flag = `\`--${spec.flag}\`${spec.required ? ' (required)' : ''}`
    const env = `\`${spec.env}\`, \`KADMIRROR_${spec.env}\``
    const fallback = spec.default === undefined ? '' : `\`${spec.default}\``
    const since = spec.since === undefined ? '' : ` _(${spec.since})_`
    return `| ${flag} | ${env} | ${fallback} | ${escapeCell(spec.description)}${since} |`
  })
  return ['| flag | environment | default | what |', '| --- | --- | --- | --- |', ...rows].join('\n')
}

/** The tables the README holds, by marker name (`global` and each command). */
export function readmeTables(): Map<string, string> {
  const tables = new Map<string, string>([['global', optionsTable(GLOBAL_OPTIONS)]])
  for (const command of COMMANDS) tables.set(command.name, optionsTable(command.options))
  return tables
}

/** The text between `<!-- options:NAME -->` and `<!-- /options:NAME -->` in `readme`, or undefined. */
export function tableIn(readme: string, name: string): string | undefined {
  const match = new RegExp(`<!-- options:${name} -->\\n([\\s\\S]*?)\\n<!-- /options:${name} -->`).exec(readme)
  return match?.[1]
}

/**
 * The cells of a markdown table, row by row, trimmed, without the separator row: what a table says, however a
 * formatter pads its columns.
 */
export function tableCells(table: string): string[][] {
  return table
    .split('\n')
    .map((line) => line.trim().replace(/^\||\|$/g, ''))
    .map((line) => line.split(/(?<!\\)\|/).map((cell) => cell.trim()))
    .filter((cells) => !cells.every((cell) => /^:?-+:?$/.test(cell)))
}

/** Rewrites every option table of the README at `path`. */
export async function writeReadmeTables(path: string): Promise<void> {
  let readme = await readFile(path, 'utf8')
  for (const [name, table] of readmeTables()) {
    const block = new RegExp(`(<!-- options:${name} -->)[\\s\\S]*?(<!-- /options:${name} -->)`)
    readme = readme.replace(block, (_, open: string, close: string) => `${open}\n${table}\n${close}`)
  }
  await writeFile(path, readme)
}

const invoked =
  process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
if (invoked) await writeReadmeTables(fileURLToPath(new URL('../README.md', import.meta.url)))
