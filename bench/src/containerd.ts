/**
 * bench/containerd: reading one blob out of a real containerd through ContainerdStore, straight from the
 * content directory vs through the content service's Read (gRPC), median of `--iterations`. Decides the
 * default read mode (`auto` reads files when the directory is readable).
 *
 * Needs root and containerd; prints why and exits otherwise.
 * Usage: node bench/src/containerd.ts [--size-mib 256] [--iterations 5]
 */
import { randomFillSync } from 'node:crypto'
import { parseArgs } from 'node:util'
import { openContainerdStore } from '@kadmirror/containerd'
import { buildImage, type Digest } from '@kadmirror/oci'
import { containerdUnavailable, startContainerd } from '../../packages/containerd/test/containerd-process.ts'
import { median, printTable, writeResults } from './report.ts'

export async function benchContainerd(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: { 'size-mib': { type: 'string', default: '256' }, iterations: { type: 'string', default: '5' } }
  })
  const why = containerdUnavailable()
  if (why !== undefined) {
    console.log(`bench/containerd skipped: ${why}`)
    return true
  }
  const size = Number(values['size-mib']) * 1024 * 1024
  const iterations = Number(values.iterations)
  const containerd = await startContainerd()
  try {
    const layer = randomFillSync(new Uint8Array(size))
    const image = buildImage({ layers: [layer] })
    const digest = [...image.blobs.entries()].find(([, b]) => b === layer)?.[0] as Digest
    await containerd.importImage('bench', 'bench.local/big:1', image)
    const seconds: Record<'file' | 'grpc', number[]> = { file: [], grpc: [] }
    for (const read of ['file', 'grpc'] as const) {
      const store = await openContainerdStore({
        address: containerd.socket,
        namespace: 'bench',
        contentDir: containerd.contentDir,
        read
      })
      try {
        for (let i = 0; i <= iterations; i++) {
          const start = performance.now()
          let bytes = 0
          for await (const chunk of await store.read(digest)) bytes += (chunk as Buffer).byteLength
          if (bytes !== size) throw new Error(`read ${bytes} bytes of ${size}`)
          if (i > 0) seconds[read].push((performance.now() - start) / 1000) // the first run warms caches
        }
      } finally {
        await store.close()
      }
    }
    const mibps = (s: number[]): number => size / 1024 / 1024 / median(s)
    printTable(
      `bench/containerd: read a ${values['size-mib']} MiB blob from containerd, median of ${iterations}`,
      [
        { read: 'content directory (file)', 'MiB/s': mibps(seconds.file), ratio: 1 },
        {
          read: 'content service Read (gRPC)',
          'MiB/s': mibps(seconds.grpc),
          ratio: mibps(seconds.grpc) / mibps(seconds.file)
        }
      ]
    )
    const file = await writeResults('containerd', { size, iterations, seconds })
    console.log(`wrote ${file}`)
    return true
  } finally {
    await containerd.stop()
  }
}

if (import.meta.main) await benchContainerd(process.argv.slice(2))
