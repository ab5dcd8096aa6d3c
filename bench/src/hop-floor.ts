/**
 * bench/hop-floor: what one peer hop can move in Node on this machine, to show where the floor of the mirror's data
 * path is. Three processes on loopback, as a mirror hop has: a peer serving a blob from memory (node:http), a proxy,
 * and curl downloading through it. The proxy is, in turn: undici piping the body (what the mirror used before);
 * the mirror's pooled blob client (`requestBlob`, reused buffers) piping it; the same with SHA-256 of every byte on the
 * same thread (what a verified hop must do at least). Plus curl straight from the peer. Median of `--runs`.
 *
 * Usage: node bench/src/hop-floor.ts [--mib 40] [--runs 5]
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { request } from 'undici'
import { requestBlob } from '../../packages/mirror/src/blob-client.ts'
import { freePort } from '../../test/e2e/fixtures.ts'
import { median, printTable, type Row, writeResults } from './report.ts'

const run = promisify(execFile)
const MODES = ['undici pipe', 'pooled client pipe', 'pooled client + SHA-256'] as const
type Mode = (typeof MODES)[number]
const LIMITS = { connectTimeoutMs: 1000, headersTimeoutMs: 3000, stallTimeoutMs: 3000, maxHeaderBytes: 16384 }

function serveBlob(port: number, bytes: number): void {
  const blob = Buffer.alloc(bytes, 7)
  createServer((_req, res) => {
    res.writeHead(200, { 'content-length': bytes })
    res.end(blob)
  }).listen(port, '127.0.0.1')
}

async function viaPooled(res: ServerResponse, peer: number, hash: boolean): Promise<void> {
  const answer = await requestBlob(
    { host: '127.0.0.1', port: peer },
    'GET',
    '/blob',
    {},
    new AbortController().signal,
    LIMITS
  )
  res.writeHead(200, { 'content-length': answer.headers['content-length'] })
  const hasher = createHash('sha256')
  answer.body.read({
    chunk(bytes, release) {
      if (hash) hasher.update(bytes)
      if (!res.write(bytes, release)) {
        answer.body.pause()
        res.once('drain', () => answer.body.resume())
      }
    },
    end() {
      if (hash) hasher.digest()
      res.end()
    },
    error: () => res.destroy()
  })
}

async function viaUndici(res: ServerResponse, peer: number): Promise<void> {
  const { body, headers } = await request(`http://127.0.0.1:${peer}/blob`)
  res.writeHead(200, { 'content-length': String(headers['content-length']) })
  body.pipe(res)
}

function proxy(port: number, peer: number, mode: Mode): void {
  createServer((_req, res) => {
    const done =
      mode === 'undici pipe' ? viaUndici(res, peer) : viaPooled(res, peer, mode === 'pooled client + SHA-256')
    done.catch(() => res.destroy())
  }).listen(port, '127.0.0.1')
}

async function child(args: string[]): Promise<ChildProcess> {
  const process_ = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: 'inherit' })
  await new Promise((resolve) => setTimeout(resolve, 800))
  return process_
}

async function curlMiBps(port: number): Promise<number> {
  const { stdout } = await run('curl', [
    '-sf',
    '-o',
    '/dev/null',
    '-w',
    '%{speed_download}',
    `http://127.0.0.1:${port}/`
  ])
  return Number(stdout) / 2 ** 20
}

/** Runs bench/hop-floor; always resolves true (it has no target: it measures a floor). */
export async function benchHopFloor(args: string[] = []): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: {
      mib: { type: 'string', default: '40' },
      runs: { type: 'string', default: '5' },
      role: { type: 'string' },
      mode: { type: 'string' },
      port: { type: 'string' },
      peer: { type: 'string' }
    }
  })
  // The child processes: they serve until killed.
  if (values.role === 'peer') {
    serveBlob(Number(values.port), Number(values.mib) * 2 ** 20)
    return true
  }
  if (values.role === 'proxy') {
    proxy(Number(values.port), Number(values.peer), values.mode as Mode)
    return true
  }
  const runs = Number(values.runs)
  const peerPort = await freePort()
  const peer = await child(['--role', 'peer', '--port', String(peerPort), '--mib', String(values.mib)])
  const rows: Row[] = []
  try {
    const speeds = async (port: number): Promise<number> => {
      await curlMiBps(port)
      const samples = []
      for (let i = 0; i < runs; i++) samples.push(await curlMiBps(port))
      return median(samples)
    }
    const direct = await speeds(peerPort)
    rows.push({ path: 'curl straight from the peer', 'MiB/s': direct, 'vs direct': 1 })
    for (const mode of MODES) {
      const port = await freePort()
      const hop = await child([
        '--role',
        'proxy',
        '--mode',
        mode,
        '--port',
        String(port),
        '--peer',
        String(peerPort)
      ])
      try {
        const speed = await speeds(port)
        rows.push({ path: `through a hop: ${mode}`, 'MiB/s': speed, 'vs direct': speed / direct })
      } finally {
        hop.kill()
        await once(hop, 'exit')
      }
    }
  } finally {
    peer.kill()
    await once(peer, 'exit')
  }
  printTable(`bench/hop-floor: a ${values.mib} MiB blob, one hop on loopback, median of ${runs} (curl)`, rows)
  console.log(`wrote ${await writeResults('hop-floor', { mib: Number(values.mib), rows })}`)
  return true
}

if (import.meta.main) await benchHopFloor(process.argv.slice(2))
