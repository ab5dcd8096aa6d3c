/**
 * Benchmark reporting: a plain-text table on stdout and a JSON file under bench/results/.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Directory benchmark JSON goes to. */
export const RESULTS_DIR = join(dirname(dirname(fileURLToPath(import.meta.url))), 'results')

/** One row of a table: column name → value. */
export type Row = Record<string, string | number>

/** Prints rows as an aligned table under a title. */
export function printTable(title: string, rows: Row[]): void {
  const first = rows[0]
  if (first === undefined) return
  const columns = Object.keys(first)
  const cell = (v: string | number | undefined): string =>
    typeof v === 'number' ? formatNumber(v) : (v ?? '')
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)))
  const line = (values: string[]): string => values.map((v, i) => v.padEnd(widths[i] as number)).join('  ')
  console.log(`\n${title}`)
  console.log(line(columns))
  console.log(line(widths.map((w) => '-'.repeat(w))))
  for (const row of rows) console.log(line(columns.map((c) => cell(row[c]))))
}

function formatNumber(value: number): string {
  if (Number.isInteger(value)) return String(value)
  return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(2) : value.toFixed(3)
}

/** Writes `data` (with the time and Node version) to bench/results/<name>.json and returns the path. */
export async function writeResults(name: string, data: unknown): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true })
  const path = join(RESULTS_DIR, `${name}.json`)
  await writeFile(
    path,
    `${JSON.stringify({ name, date: new Date().toISOString(), node: process.version, data }, null, 2)}\n`
  )
  return path
}

/** The median of numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** The nearest-rank `p`th percentile of numbers (p in 0..100); NaN when there are none. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number
}
