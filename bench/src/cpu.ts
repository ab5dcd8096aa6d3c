/**
 * CPU readings for benchmarks, from /proc: the whole machine's busy share between two readings.
 */
import { readFile } from 'node:fs/promises'

/** The machine's CPU time so far (/proc/stat): busy and total jiffies. */
export async function cpuTimes(): Promise<{ busy: number; total: number }> {
  const fields = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  const total = fields.reduce((sum, v) => sum + v, 0)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  return { busy: total - idle, total }
}

/** The share of all cores busy between two readings, in %. */
export function busyPercent(
  before: { busy: number; total: number },
  after: { busy: number; total: number }
): number {
  return (100 * (after.busy - before.busy)) / Math.max(1, after.total - before.total)
}
