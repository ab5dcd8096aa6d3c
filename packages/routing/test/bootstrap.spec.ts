import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import fc from 'fast-check'
import {
  type BootstrapServer,
  createBootstrapServer,
  dnsBootstrapper,
  httpBootstrapper,
  InvalidBootstrapPeerError,
  InvalidCertDirError,
  idHandler,
  type Libp2pRouter,
  parseAddrInfos,
  staticBootstrapper
} from '../src/index.ts'
import { createPki, haveOpenssl, type Pki } from './certs.ts'
import { startNode, stopAll, waitFor } from './cluster.ts'

const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

describe('parseAddrInfos', () => {
  it('reads Spegel’s AddrInfo JSON', () => {
    assert.deepEqual(parseAddrInfos(`[{"ID":"${PEER}","Addrs":["/ip4/10.0.0.1/tcp/5001"]}]`), [
      { id: PEER, addresses: ['/ip4/10.0.0.1/tcp/5001'] }
    ])
  })

  it('accepts an empty ID and completes an address that names only an IP with the router port', () => {
    assert.deepEqual(parseAddrInfos('[{"ID":"","Addrs":["/ip4/10.0.0.1"]}]', { port: 6001 }), [
      { addresses: ['/ip4/10.0.0.1/tcp/6001'] }
    ])
  })

  it('uses at most `limit` entries', () => {
    const entries = Array.from({ length: 5 }, (_, i) => ({ ID: '', Addrs: [`/ip4/10.0.0.${i}/tcp/5001`] }))
    assert.equal(parseAddrInfos(JSON.stringify(entries), { limit: 3 }).length, 3)
  })

  it('reads Gardener’s node list, dialling each IP on the router port', () => {
    assert.deepEqual(
      parseAddrInfos('[{"IP":"10.0.0.1","Zone":"eu-1a"},{"IP":"fd00::2","Zone":"eu-1b"}]', { port: 5001 }),
      [{ addresses: ['/ip4/10.0.0.1/tcp/5001'] }, { addresses: ['/ip6/fd00::2/tcp/5001'] }]
    )
  })

  it('reads a plain list of IP strings, dialling each on the router port', () => {
    assert.deepEqual(parseAddrInfos('["10.0.0.3", "::1"]', { port: 6001 }), [
      { addresses: ['/ip4/10.0.0.3/tcp/6001'] },
      { addresses: ['/ip6/::1/tcp/6001'] }
    ])
  })

  it('reads any IPv4 address in a plain list', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        assert.deepEqual(parseAddrInfos(JSON.stringify([ip])), [{ addresses: [`/ip4/${ip}/tcp/5001`] }])
      })
    )
  })

  for (const [why, text] of [
    ['not JSON', '<html>'],
    ['a string that is not an IP', '["node-1"]'],
    ['a Gardener entry whose IP is not one', '[{"IP":"10.0.0.300","Zone":"a"}]'],
    ['a Gardener entry whose IP is a number', '[{"IP":10}]'],
    ['a number', '[5]'],
    ['a string', '"hello"'],
    ['an entry without Addrs', '[{"ID":""}]'],
    ['an address that is not a multiaddr', '[{"ID":"","Addrs":["10.0.0.1:5001"]}]'],
    ['an ID that is not a peer id', '[{"ID":"not-a-peer","Addrs":["/ip4/10.0.0.1/tcp/5001"]}]'],
    ['an ID that is a number', '[{"ID":5,"Addrs":["/ip4/10.0.0.1/tcp/5001"]}]']
  ] as const) {
    it(`rejects ${why} with InvalidBootstrapPeerError`, () => {
      assert.throws(() => parseAddrInfos(text), InvalidBootstrapPeerError)
    })
  }
})

describe('staticBootstrapper', () => {
  it('gives each address, with the peer id of a /p2p/ suffix', async () => {
    const peers = await staticBootstrapper([
      `/ip4/10.0.0.1/tcp/5001/p2p/${PEER}`,
      '/ip4/10.0.0.2/tcp/5001'
    ]).peers()
    assert.deepEqual(peers, [
      { id: PEER, addresses: [`/ip4/10.0.0.1/tcp/5001/p2p/${PEER}`] },
      { addresses: ['/ip4/10.0.0.2/tcp/5001'] }
    ])
  })

  it('rejects an address that is not a multiaddr when created', () => {
    assert.throws(() => staticBootstrapper(['10.0.0.1:5001']), InvalidBootstrapPeerError)
  })
})

describe('dnsBootstrapper', function () {
  this.timeout(30_000)

  it('gives the addresses of a name on the router port', async () => {
    const peers = await dnsBootstrapper({ name: 'localhost', port: 6001 }).peers()
    assert.ok(
      peers.some((p) => p.addresses[0] === '/ip4/127.0.0.1/tcp/6001'),
      JSON.stringify(peers)
    )
  })

  it('joins a node to the one behind the name, learning its peer id in the handshake', async () => {
    const first = await startNode()
    const port = Number(first.addresses()[0]?.split('/')[4])
    const second = await startNode({ bootstrapper: dnsBootstrapper({ name: 'localhost', port }) })
    try {
      await waitFor(() => second.peers().includes(first.peerId), 10_000, 'the DNS-bootstrapped node to join')
    } finally {
      await stopAll([first, second])
    }
  })

  it('rejects a name that does not resolve', async () => {
    await assert.rejects(dnsBootstrapper({ name: 'no-such-host.invalid' }).peers())
  })
})

describe('HTTP bootstrap', function () {
  this.timeout(60_000)
  let pki: Pki
  let server: BootstrapServer | undefined
  const nodes: Libp2pRouter[] = []

  before(async function () {
    if (!(await haveOpenssl())) {
      console.log('    skipped: the openssl command is not installed (needed to make test certificates)')
      this.skip()
    }
    pki = await createPki()
  })

  afterEach(async () => {
    await stopAll(nodes.splice(0))
    await server?.close()
    server = undefined
  })

  after(async () => {
    await pki?.cleanup()
  })

  /** A CA, a server cert dir and a client cert dir signed by it. */
  async function setupTls(name: string) {
    const ca = await pki.ca(`${name}-ca`)
    const serverCert = await pki.leaf(ca, `${name}-server`)
    const clientCert = await pki.leaf(ca, `${name}-client`)
    const serverDir = await pki.certDir(join(pki.root, `${name}-server-dir`), { ca: ca.cert, ...serverCert })
    const clientDir = await pki.certDir(join(pki.root, `${name}-client-dir`), { ca: ca.cert, ...clientCert })
    return { ca, serverDir, clientDir }
  }

  it('forms a cluster of nodes that register over mutual TLS', async () => {
    const { serverDir, clientDir } = await setupTls('form')
    server = await createBootstrapServer({ port: 0, host: '127.0.0.1', certDir: serverDir })
    const url = server.listUrl
    for (let i = 0; i < 3; i++)
      nodes.push(await startNode({ bootstrapper: httpBootstrapper({ url, certDir: clientDir }) }))
    await waitFor(() => nodes.every((n) => n.peers().length === 2), 20_000, 'three nodes to find each other')
    assert.equal(server.nodes().length, 3)
  })

  it('refuses a client without a certificate', async () => {
    const { serverDir, ca } = await setupTls('nocert')
    server = await createBootstrapServer({ port: 0, host: '127.0.0.1', certDir: serverDir })
    const onlyCa = await pki.certDir(join(pki.root, 'nocert-only-ca'), { ca: ca.cert })
    await assert.rejects(httpBootstrapper({ url: server.listUrl, certDir: onlyCa }).peers())
  })

  it('refuses a client certificate from another CA', async () => {
    const { serverDir, ca } = await setupTls('wrongca')
    const other = await pki.ca('wrongca-other')
    const stranger = await pki.leaf(other, 'wrongca-stranger')
    server = await createBootstrapServer({ port: 0, host: '127.0.0.1', certDir: serverDir })
    const dir = await pki.certDir(join(pki.root, 'wrongca-client'), { ca: ca.cert, ...stranger })
    await assert.rejects(httpBootstrapper({ url: server.listUrl, certDir: dir }).peers())
  })

  it('refuses an expired client certificate', async () => {
    const { serverDir, ca } = await setupTls('expired')
    const old = await pki.leaf(ca, 'expired-client-old', -1)
    server = await createBootstrapServer({ port: 0, host: '127.0.0.1', certDir: serverDir })
    const dir = await pki.certDir(join(pki.root, 'expired-client'), { ca: ca.cert, ...old })
    await assert.rejects(httpBootstrapper({ url: server.listUrl, certDir: dir }).peers())
  })

  it('keeps working when the CA and every certificate rotate, without a restart', async () => {
    const first = await setupTls('rotate1')
    server = await createBootstrapServer({ port: 0, host: '127.0.0.1', certDir: first.serverDir })
    const client = httpBootstrapper({ url: server.listUrl, certDir: first.clientDir })
    await client.register?.({ id: PEER, addresses: ['/ip4/10.0.0.1/tcp/5001'] })
    assert.equal((await client.peers()).length, 1)

    const next = await pki.ca('rotate2-ca')
    const nextServer = await pki.leaf(next, 'rotate2-server')
    const nextClient = await pki.leaf(next, 'rotate2-client')
    const oldClientDir = await pki.certDir(join(pki.root, 'rotate1-old-client'), {
      ca: first.ca.cert,
      ...(await pki.leaf(first.ca, 'rotate1-old'))
    })
    await pki.certDir(first.serverDir, { ca: next.cert, ...nextServer })
    await pki.certDir(first.clientDir, { ca: next.cert, ...nextClient })
    // The server notices the new files by itself; the client re-reads them on its next request.
    await waitFor(
      async () => (await client.peers().catch(() => [])).length === 1,
      10_000,
      'the rotated certificates to work'
    )
    await assert.rejects(httpBootstrapper({ url: server.listUrl, certDir: oldClientDir }).peers())
    await client.close?.()
  })

  it('drops a node that stops renewing its registration', async () => {
    server = await createBootstrapServer({ port: 0, host: '127.0.0.1', insecure: true, nodeTtlMs: 200 })
    const client = httpBootstrapper({ url: server.listUrl })
    await client.register?.({ id: PEER, addresses: ['/ip4/10.0.0.1/tcp/5001'] })
    assert.equal(server.nodes().length, 1)
    await waitFor(() => server?.nodes().length === 0, 5_000, 'the registration to expire')
  })

  it('answers a registration without an ID with 400', async () => {
    server = await createBootstrapServer({ port: 0, host: '127.0.0.1', insecure: true })
    const response = await fetch(server.listUrl, {
      method: 'POST',
      body: '{"ID":"","Addrs":["/ip4/10.0.0.1/tcp/5001"]}'
    })
    assert.equal(response.status, 400)
    assert.match(((await response.json()) as { error: string }).error, /needs an ID/)
  })

  it('refuses to start without server certificates unless insecure', async () => {
    const empty = await pki.certDir(join(pki.root, 'empty-dir'), {})
    await assert.rejects(createBootstrapServer({ port: 0, certDir: empty }), InvalidCertDirError)
  })

  it('reads a Spegel node’s /id', async () => {
    const node = await startNode()
    nodes.push(node)
    const http: Server = createServer(idHandler(node))
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/id`
      const peers = await httpBootstrapper({ url }).peers()
      assert.deepEqual(peers, [{ id: node.peerId, addresses: node.addresses() }])
    } finally {
      http.close()
    }
  })

  it('keeps a node running and retrying when the bootstrap answer is garbage', async () => {
    let requests = 0
    const http: Server = createServer((_req, res) => {
      requests++
      res.end('this is not json')
    })
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    const logs: string[] = []
    const { pino } = await import('pino')
    const logger = pino({ level: 'warn' }, { write: (line: string) => logs.push(line) })
    try {
      const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/id`
      const node = await startNode({ bootstrapper: httpBootstrapper({ url }), logger })
      nodes.push(node)
      await waitFor(() => requests >= 3, 5_000, 'bootstrap retries')
      assert.equal(await node.ready(), false)
      assert.ok(
        logs.some((line) => /bootstrap failed/.test(line) && /not JSON/.test(line)),
        logs.join('\n')
      )
    } finally {
      http.close()
    }
  })
})
