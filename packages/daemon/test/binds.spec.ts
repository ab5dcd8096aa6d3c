import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePorts } from '@kadmirror/test-support'
import { startCli } from './cli-process.ts'

/** This machine's first non-loopback IPv4 address. */
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address

/** Whether a TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

describe('what the registry command binds', function () {
  this.timeout(60_000)
  let dir: string

  beforeEach(async function () {
    if (ownAddress === undefined) this.skip()
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-binds-'))
  })
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('binds the mirror, router and metrics to every interface by default, and each to one address when told', async () => {
    const [registry, router, metrics] = await freePorts(3)
    const own = ownAddress as string
    const args = (bind: (port: number) => string) => [
      'registry',
      '--bootstrap-kind=static',
      '--static-bootstrap-peers',
      '/ip4/127.0.0.1/tcp/1',
      `--store=oci-layout:${dir}`,
      `--registry-addr=${bind(registry as number)}`,
      `--router-addr=${bind(router as number)}`,
      `--metrics-addr=${bind(metrics as number)}`
    ]
    const everywhere = startCli(args((port) => `:${port}`))
    try {
      await everywhere.waitForLog(/"msg":"running kadmirror"/)
      for (const port of [registry, router, metrics] as number[]) {
        assert.equal(await accepts('127.0.0.1', port), true, `loopback :${port}`)
        assert.equal(await accepts(own, port), true, `${own}:${port}`)
      }
    } finally {
      await everywhere.stop()
    }
    const loopbackOnly = startCli([...args((port) => `127.0.0.1:${port}`), '--allow-loopback'])
    try {
      await loopbackOnly.waitForLog(/"msg":"running kadmirror"/)
      for (const port of [registry, router, metrics] as number[]) {
        assert.equal(await accepts('127.0.0.1', port), true, `loopback :${port}`)
        assert.equal(await accepts(own, port), false, `${own}:${port}`)
      }
    } finally {
      await loopbackOnly.stop()
    }
  })
})
