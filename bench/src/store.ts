/**
 * bench/store: reading one large blob from OciLayoutStore vs a plain fs.createReadStream of the same file.
 * Runs alternate, so page-cache state is the same for both; reports the median throughput and the ratio.
 * Target: OciLayoutStore ≥ 0.95× fs.createReadStream.
 *
 * Usage: node bench/src/store.ts [--size-mib 256] [--iterations 7]
 */
import { randomFillSync } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { digestAlgorithm, digestHex } from '@kadmirror/oci'
import { openOciLayoutStore, READ_HIGH_WATER_MARK } from '@kadmirror/store'
import { median, printTable, writeResults } from './report.ts'

const TARGET_RATIO = 0.95
const CHUNK = 4 * 1024 * 1024

/** Runs the store benchmark; resolves true when the target is met. */
export async function benchStore(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: { 'size-mib': { type: 'string', default: '256' }, iterations: { type: 'string', default: '7' } }
  })
  const sizeMiB = Number(values['size-mib'])
  const iterations = Number(values.iterations)
  const size = sizeMiB * 1024 * 1024
  const directory = await mkdtemp(join(tmpdir(), 'kadmirror-bench-store-'))
  const store = await openOciLayoutStore({ directory, watch: false })
  try {
    async function* generate(): AsyncGenerator<Uint8Array> {
      for (let written = 0; written < size; written += CHUNK)
        yield randomFillSync(new Uint8Array(Math.min(CHUNK, size - written)))
    }
    const { digest } = await store.putBlob(generate(), { size })
    const path = join(directory, 'blobs', digestAlgorithm(digest), digestHex(digest))

    const drain = async (stream: Readable): Promise<number> => {
      let bytes = 0
      for await (const chunk of stream) bytes += (chunk as Buffer).byteLength
      if (bytes !== size) throw new Error(`read ${bytes} bytes, expected ${size}`)
      return bytes
    }
    const time = async (open: () => Promise<Readable> | Readable): Promise<number> => {
      const start = process.hrtime.bigint()
      await drain(await open())
      return Number(process.hrtime.bigint() - start) / 1e9
    }

    await time(() => createReadStream(path)) // warm the page cache
    const plain: number[] = []
    const plainSameChunks: number[] = []
    const ours: number[] = []
    const rssBefore = process.memoryUsage().rss
    let rssPeak = rssBefore
    for (let i = 0; i < iterations; i++) {
      plain.push(await time(() => createReadStream(path)))
      plainSameChunks.push(await time(() => createReadStream(path, { highWaterMark: READ_HIGH_WATER_MARK })))
      ours.push(await time(() => store.read(digest)))
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
    }
    const mibps = (seconds: number): number => sizeMiB / seconds
    const plainMiBps = mibps(median(plain))
    const oursMiBps = mibps(median(ours))
    const ratio = oursMiBps / plainMiBps
    printTable(`bench/store: read a ${sizeMiB} MiB blob, median of ${iterations} (page cache warm)`, [
      {
        reader: 'fs.createReadStream (default 64 KiB chunks)',
        'MiB/s': plainMiBps,
        'seconds p50': median(plain),
        ratio: 1
      },
      {
        reader: 'fs.createReadStream (1 MiB chunks, as the store)',
        'MiB/s': mibps(median(plainSameChunks)),
        'seconds p50': median(plainSameChunks),
        ratio: mibps(median(plainSameChunks)) / plainMiBps
      },
      { reader: 'OciLayoutStore.read', 'MiB/s': oursMiBps, 'seconds p50': median(ours), ratio }
    ])
    const met = ratio >= TARGET_RATIO
    console.log(
      `target ≥ ${TARGET_RATIO}×: ${met ? 'met' : 'NOT met'} (${ratio.toFixed(2)}×); RSS grew ${((rssPeak - rssBefore) / 1024 / 1024).toFixed(1)} MiB while reading`
    )
    const file = await writeResults('store', {
      sizeMiB,
      iterations,
      seconds: {
        fsCreateReadStream: plain,
        fsCreateReadStreamSameChunks: plainSameChunks,
        ociLayoutStore: ours
      },
      medianMiBps: {
        fsCreateReadStream: plainMiBps,
        fsCreateReadStreamSameChunks: mibps(median(plainSameChunks)),
        ociLayoutStore: oursMiBps
      },
      ratio,
      target: TARGET_RATIO,
      met,
      rssGrowthMiB: (rssPeak - rssBefore) / 1024 / 1024
    })
    console.log(`wrote ${file}`)
    return met
  } finally {
    await store.close()
    await rm(directory, { recursive: true, force: true })
  }
}

if (import.meta.main) await benchStore(process.argv.slice(2))
