/**
 * The upstream registry of bench/flash-crowd: docker-registry in a network namespace of the benchmark, its access
 * log read as it is written (method, whether a blob, digest, bytes sent) so that the bytes it served can be counted.
 */
import { createInterface } from 'node:readline'
import { stopProcess } from '@kadmirror/test-support/daemons'
import type { NetworkNode } from '@kadmirror/test-support/netns'

/** One access-log line. */
export interface UpstreamRequest {
  method: string
  path: string
  blob: boolean
  /** The blob's digest (the path's last segment) when a blob request, else ''. */
  digest: string
  status: number
  /** Bytes of the answer's body the registry logged. */
  bytes: number
}

/** The access log so far. */
export interface UpstreamLog {
  entries: UpstreamRequest[]
}

const ACCESS_LINE = /"(GET|HEAD) ([^ ]+) HTTP\/[^"]*" (\d{3}) (\d+|-)/

/** Parses one docker-registry access-log line (combined log format), or undefined for other lines. */
export function parseAccessLine(line: string): UpstreamRequest | undefined {
  const match = ACCESS_LINE.exec(line)
  if (match === null) return undefined
  const [, method, path, status, bytes] = match as unknown as [string, string, string, string, string]
  const blob = /\/blobs\/sha256:[0-9a-f]{64}$/.test(path)
  return {
    method,
    path,
    blob,
    digest: blob ? path.slice(path.lastIndexOf('/') + 1) : '',
    status: Number(status),
    bytes: bytes === '-' ? 0 : Number(bytes)
  }
}

/** Starts docker-registry with `config` in `node`'s namespace; resolves once it answers /v2/ there. */
export async function startUpstream(
  node: NetworkNode,
  config: string
): Promise<{ log: UpstreamLog; stop(): Promise<void> }> {
  const child = node.spawn('/usr/bin/docker-registry', ['serve', config], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const log: UpstreamLog = { entries: [] }
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream as NodeJS.ReadableStream }).on('line', (line) => {
      const entry = parseAccessLine(line)
      if (entry !== undefined) log.entries.push(entry)
    })
  }
  const deadline = Date.now() + 15_000
  for (;;) {
    const ok = await node.run('curl', ['-sf', '-o', '/dev/null', `http://${node.address}:5000/v2/`]).then(
      () => true,
      () => false
    )
    if (ok) break
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopProcess(child)
      throw new Error('docker-registry did not start in its namespace')
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  log.entries.length = 0
  return {
    log,
    stop: () => stopProcess(child)
  }
}
