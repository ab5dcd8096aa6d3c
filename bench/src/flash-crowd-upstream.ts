/**
 * The upstream registry of bench/flash-crowd: docker-registry in a network namespace of the benchmark, its access
 * log read as it is written (method, whether a blob, digest, bytes sent) so that the bytes it served can be counted.
 */
import { createInterface } from 'node:readline'
import { waitFor } from '@kadmirror/test-support'
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

/** True when `url` answers 2xx to a GET (a HEAD with `head`) sent from `node`'s namespace (curl there). */
export function answersFrom(node: NetworkNode, url: string, head = false): Promise<boolean> {
  const args = [head ? '-sfI' : '-sf', '-o', '/dev/null', url]
  return node.run('curl', args).then(
    () => true,
    () => false
  )
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
  const started = async (): Promise<boolean> => {
    if (child.exitCode !== null) throw new Error('docker-registry exited')
    return answersFrom(node, `http://${node.address}:5000/v2/`)
  }
  await waitFor(started, 15_000, 'docker-registry to start in its namespace', 100).catch(
    async (err: unknown) => {
      await stopProcess(child)
      throw err
    }
  )
  log.entries.length = 0
  return {
    log,
    stop: () => stopProcess(child)
  }
}
