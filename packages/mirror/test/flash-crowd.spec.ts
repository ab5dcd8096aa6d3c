/**
 * Flash crowds: nodes that miss the same blob at once elect one to fetch it from upstream; the node serves its
 * download to the others while it grows, and they verify it as any peer content.
 */
import assert from 'node:assert/strict'
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Digest, digestOf } from '@kadmirror/oci'
import { createMemoryNetwork, type MemoryNetwork, type MemoryRouter, type Router } from '@kadmirror/routing'
import { createMemoryStore, type MemoryStore } from '@kadmirror/store'
import fc from 'fast-check'
import { ARRIVING_HEADER, FETCHER_HEADER } from '../src/constants.ts'
import {
  type ClaimClock,
  Claims,
  claimKey,
  claimRank,
  createMirrorHandler,
  type GrowingContent,
  type MirrorHandler,
  type MirrorHandlerInit,
  type UpstreamEvent
} from '../src/index.ts'
import { namedFetcher } from '../src/peer-fetch.ts'
import {
  errorCode,
  get,
  listen,
  randomBytes,
  serveBytes,
  startFakePeer,
  stopServer,
  urlOf,
  waitFor
} from './fixtures.ts'

/** A clock whose time moves only when the test says so. */
class FakeClock implements ClaimClock {
  time = 0
  private readonly timers: Array<{ at: number; fn: () => void }> = []

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true })
      this.after(ms, resolve)
    })
  }

  now(): number {
    return this.time
  }

  after(ms: number, fn: () => void): void {
    this.timers.push({ at: this.time + ms, fn })
  }

  /** Moves time forward by `ms`, running every timer due, then lets the promises they resolved run. */
  async advance(ms: number): Promise<void> {
    this.time += ms
    for (const timer of this.timers.filter((t) => t.at <= this.time)) {
      this.timers.splice(this.timers.indexOf(timer), 1)
      timer.fn()
    }
    for (let i = 0; i < 20; i++) await Promise.resolve()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const digest = (n: number): Digest => digestOf(Buffer.from(`blob ${n}`))
const never = new AbortController().signal

/** `router` without `claim`: the election runs on claim records. */
function withoutClaims(router: Router): Router {
  const { claim: _claim, ...rest } = router
  return rest
}

describe('flash-crowd election on claim records', () => {
  let network: MemoryNetwork
  let clock: FakeClock
  const routers: MemoryRouter[] = []
  beforeEach(() => {
    network = createMemoryNetwork()
    clock = new FakeClock()
  })
  afterEach(async () => {
    await Promise.all(routers.splice(0).map((r) => r.close()))
  })

  /** A node's claims: at the network's arbiter, or (`records`) on claim records. */
  function claims(id: string, election: 'arbiter' | 'records' = 'records'): Claims {
    const created = network.createRouter({ id, registryUrl: `http://${id}` })
    routers.push(created)
    const router = election === 'records' ? withoutClaims(created) : created
    return new Claims({ router, selfId: id, settleMs: 40, claimTtlMs: 10_000, lookupTimeoutMs: 200, clock })
  }

  /** Runs the elections of `nodes` for `blob` at once and returns each node's role. */
  async function electAll(nodes: Claims[], blob: Digest): Promise<string[]> {
    const elections = Promise.all(nodes.map((n) => n.elect(blob, never)))
    await clock.advance(0)
    await clock.advance(40)
    return (await elections).map((e) => e.role)
  }

  it('elects a node that misses a blob alone to fetch it', async () => {
    assert.deepEqual(await electAll([claims('a')], digest(1)), ['fetch'])
  })

  it('elects exactly one fetcher among nodes that miss a blob at once, the one ranked first', async () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f']
    const roles = await electAll(
      ids.map((id) => claims(id)),
      digest(2)
    )
    assert.equal(roles.filter((r) => r === 'fetch').length, 1)
    const first = [...ids].sort((x, y) => (claimRank(digest(2), x) < claimRank(digest(2), y) ? -1 : 1))[0]
    assert.equal(roles[ids.indexOf(first as string)], 'fetch')
  })

  it('has a node that finds a claim wait without claiming', async () => {
    const [a, b] = [claims('a'), claims('b')]
    assert.deepEqual(await electAll([a], digest(3)), ['fetch'])
    assert.equal((await b.elect(digest(3), never)).role, 'wait')
    assert.equal(b.size(), 0)
  })

  it('names the elected node to the nodes that wait (the others withdraw their claims), so they can ask it directly', async () => {
    const ids = ['a', 'b', 'c', 'd']
    const nodes = ids.map((id) => claims(id))
    const elections = Promise.all(nodes.map((n) => n.elect(digest(6), never)))
    await clock.advance(0)
    await clock.advance(40)
    const outcome = await elections
    const fetcher = ids[outcome.findIndex((e) => e.role === 'fetch')]
    for (const election of outcome)
      if (election.role === 'wait') assert.equal(election.fetchers[0]?.id, fetcher)
    await clock.advance(0)
    const late = await claims('e').elect(digest(6), never)
    assert.deepEqual(late.role === 'wait' && late.fetchers.map((f) => f.id), [fetcher])
  })

  it('remembers, on a node that lost, which claimer won — until the claim time has passed', async () => {
    const ids = ['a', 'b', 'c']
    const nodes = ids.map((id) => claims(id))
    const elections = Promise.all(nodes.map((n) => n.elect(digest(7), never)))
    await clock.advance(0)
    await clock.advance(40)
    const outcome = await elections
    const fetcher = ids[outcome.findIndex((e) => e.role === 'fetch')]
    for (const [i, election] of outcome.entries())
      assert.equal(nodes[i]?.winnerOf(digest(7))?.id, election.role === 'wait' ? fetcher : undefined)
    await clock.advance(10_000)
    assert.deepEqual(
      nodes.map((n) => n.winnerOf(digest(7))),
      [undefined, undefined, undefined]
    )
  })

  it('answers fetch again to the elected node while its claim lasts', async () => {
    const a = claims('a')
    await electAll([a], digest(4))
    assert.equal((await a.elect(digest(4), never)).role, 'fetch')
  })

  it('withdraws a claim after its time to live, so that a later miss elects again', async () => {
    const [a, b] = [claims('a'), claims('b')]
    await electAll([a], digest(5))
    assert.equal(a.size(), 1)
    await clock.advance(10_000)
    assert.equal(a.size(), 0)
    const providers = []
    for await (const p of routers[1]?.lookup(claimKey(digest(5))) ?? []) providers.push(p)
    assert.deepEqual(providers, [])
    assert.deepEqual(await electAll([b], digest(5)), ['fetch'])
  })

  it('settles for twice what its first look and claim took, at least 5 ms and at most settleMs', () => {
    const node = claims('a')
    assert.deepEqual(
      [0, 1, 10, 19, 100].map((ms) => node.settleTime(ms)),
      [5, 5, 20, 38, 40]
    )
  })

  it('reads the claims again only after twice the time its first look took', async () => {
    const router = network.createRouter({ id: 'a', registryUrl: 'http://a' })
    routers.push(router)
    let lookups = 0
    // Every lookup takes 15 ms of the fake clock.
    const slow: MemoryRouter['lookup'] = (key, options) =>
      (async function* () {
        lookups++
        await clock.sleep(15, never)
        yield* router.lookup(key, options)
      })()
    const node = new Claims({
      router: withoutClaims({
        ...router,
        advertise: (keys) => router.advertise(keys),
        withdraw: (keys) => router.withdraw(keys),
        lookup: slow,
        ready: () => router.ready(),
        close: () => router.close()
      }),
      selfId: 'a',
      settleMs: 40,
      claimTtlMs: 10_000,
      lookupTimeoutMs: 200,
      clock
    })
    let role: string | undefined
    const election = node.elect(digest(9), never).then((e) => (role = e.role))
    await clock.advance(0)
    await clock.advance(15)
    await clock.advance(29)
    assert.equal(lookups, 1, 'the second look waits 30 ms after the claim')
    await clock.advance(1)
    assert.equal(lookups, 2)
    await clock.advance(15)
    await election
    assert.equal(role, 'fetch')
  })

  it('spreads the blobs of one image over several fetchers', async () => {
    const nodes = ['a', 'b', 'c', 'd'].map((id) => claims(id))
    const winners = new Set<number>()
    for (let n = 10; n < 20; n++) {
      const roles = await electAll(nodes, digest(n))
      winners.add(roles.indexOf('fetch'))
    }
    assert.ok(winners.size >= 2, `one node fetched all ten blobs (${[...winners]})`)
  })
})

describe('flash-crowd election at the arbiter', () => {
  const routers: MemoryRouter[] = []
  let network: MemoryNetwork
  let clock: FakeClock
  beforeEach(() => {
    network = createMemoryNetwork({ claimHoldMs: 50 })
    clock = new FakeClock()
  })
  afterEach(async () => {
    await Promise.all(routers.splice(0).map((r) => r.close()))
  })

  function claims(
    id: string,
    router: Router = network.createRouter({ id, registryUrl: `http://${id}` })
  ): Claims {
    routers.push(router as MemoryRouter)
    return new Claims({ router, selfId: id, settleMs: 40, claimTtlMs: 10_000, lookupTimeoutMs: 200, clock })
  }

  it('elects the first node to claim a blob, at once, and names it to every other, then those that lost before', async () => {
    const [a, b, c] = [claims('a'), claims('b'), claims('c')]
    // No time passes on the clock: no settle, no second look.
    assert.deepEqual(await a.elect(digest(30), never), { role: 'fetch' })
    const asked = async (node: Claims) => {
      const election = await node.elect(digest(30), never)
      return election.role === 'wait' && election.fetchers.map((f) => f.registryUrl)
    }
    assert.deepEqual(await asked(b), ['http://a'])
    assert.deepEqual(await asked(c), ['http://a', 'http://b']) // b relays what it receives from a
    for (const node of [b, c]) assert.equal(node.winnerOf(digest(30))?.id, 'a')
    assert.equal(a.fetching(digest(30)), true)
  })

  it('elects one node among nodes that claim a blob at once', async () => {
    const nodes = ['a', 'b', 'c', 'd', 'e'].map((id) => claims(id))
    const elections = await Promise.all(nodes.map((n) => n.elect(digest(31), never)))
    assert.equal(elections.filter((e) => e.role === 'fetch').length, 1)
  })

  it('elects again once the arbiter no longer holds the claim', async () => {
    const [a, b] = [claims('a'), claims('b')]
    assert.equal((await a.elect(digest(32), never)).role, 'fetch')
    assert.equal((await b.elect(digest(32), never)).role, 'wait')
    await new Promise((resolve) => setTimeout(resolve, 60)) // the network's claimHoldMs: 50
    assert.equal((await b.elect(digest(32), never)).role, 'fetch')
  })

  it('reads the holder again without claiming', async () => {
    const [a, b] = [claims('a'), claims('b')]
    assert.deepEqual(await b.fetchers(digest(33), 200, never), [])
    assert.equal((await a.elect(digest(33), never)).role, 'fetch')
    assert.deepEqual(
      (await b.fetchers(digest(33), 200, never)).map((f) => f.id),
      ['a']
    )
  })

  it('rejects when no arbiter answers (the mirror then fetches)', async () => {
    const router = network.createRouter({ id: 'a', registryUrl: 'http://a' })
    const failing: Router = { ...router, claim: () => Promise.reject(new Error('no arbiter answered')) }
    await assert.rejects(claims('a', failing).elect(digest(34), never), /no arbiter/)
    routers.push(router)
  })
})

describe('content in flight', function () {
  this.timeout(20_000)
  let dir: string
  let network: MemoryNetwork
  const stops: Array<() => Promise<void>> = []
  const blob = randomBytes(3 * 1024 * 1024 + 17, 9)
  const blobDigest = digestOf(blob)
  const path = `/v2/team/app/blobs/${blobDigest}?ns=example.com`

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-in-flight-'))
    network = createMemoryNetwork()
  })
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop()
    await rm(dir, { recursive: true, force: true })
  })

  interface Node {
    url: string
    router: MemoryRouter
    handler: MirrorHandler
    store: MemoryStore
    upstream: UpstreamEvent[]
  }

  /** A mirror node on the network; `election`: its flash-crowd election at the arbiter or on claim records. */
  async function node(
    id: string,
    options: Omit<MirrorHandlerInit, 'store' | 'router'> = {},
    inFlight?: Map<Digest, GrowingContent>,
    election: 'arbiter' | 'records' = 'arbiter'
  ): Promise<Node> {
    const server: Server = await listen()
    const router = network.createRouter({ id, registryUrl: urlOf(server) })
    const store = createMemoryStore()
    const handler = createMirrorHandler({
      store,
      router: election === 'records' ? withoutClaims(router) : router,
      flashCrowd: { selfId: id, waitMs: 1500 },
      ...(inFlight === undefined ? {} : { inFlight: { find: async (d) => inFlight.get(d) } }),
      ...options
    })
    server.on('request', handler)
    const upstream: UpstreamEvent[] = []
    handler.events.on('upstream', (e) => upstream.push(e))
    stops.push(async () => {
      await stopServer(server)
      await handler.close()
      await router.close()
      await store.close()
    })
    return { url: urlOf(server), router, handler, store, upstream }
  }

  /** Appends `content` to `file` in steps of `stepBytes` every `everyMs` (as containerd's download grows). */
  function grow(
    file: string,
    content: Buffer,
    stepBytes: number,
    everyMs: number,
    upTo = content.byteLength
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      let written = 0
      let writing = false
      const timer = setInterval(() => {
        if (writing) return
        writing = true
        const end = Math.min(upTo, written + stepBytes)
        appendFile(file, content.subarray(written, end)).then(() => {
          writing = false
          written = end
          if (written >= upTo) {
            clearInterval(timer)
            resolve()
          }
        }, reject)
      }, everyMs)
      stops.push(async () => clearInterval(timer))
    })
  }

  it('serves a peer a blob while it is still being written, every byte', async () => {
    const file = join(dir, 'data')
    await writeFile(file, '')
    const a = await node('a', {}, new Map([[blobDigest, { path: file, size: blob.byteLength }]]))
    const growing = grow(file, blob, 256 * 1024, 10)
    const response = await get(a.url, path, { 'x-spegel-mirrored': 'true' })
    await growing
    assert.equal(response.status, 200)
    assert.equal(response.headers['content-length'], String(blob.byteLength))
    assert.equal(response.headers[ARRIVING_HEADER], 'true') // kadmirror peers take it in one stream
    assert.ok(response.body.equals(blob))
  })

  it('serves a range of a blob still being written', async () => {
    const file = join(dir, 'data')
    await writeFile(file, '')
    const a = await node('a', {}, new Map([[blobDigest, { path: file, size: blob.byteLength }]]))
    const growing = grow(file, blob, 512 * 1024, 10)
    const response = await get(a.url, path, { 'x-spegel-mirrored': 'true', range: 'bytes=1000000-2000000' })
    await growing
    assert.equal(response.status, 206)
    assert.ok(response.body.equals(blob.subarray(1_000_000, 2_000_001)))
  })

  it('answers a peer 404 when the download is gone before it is opened (committed or removed)', async () => {
    const a = await node('a', {}, new Map([[blobDigest, { path: join(dir, 'gone'), size: blob.byteLength }]]))
    const response = await get(a.url, path, { 'x-spegel-mirrored': 'true' })
    assert.equal(response.status, 404)
    assert.equal(errorCode(response), 'BLOB_UNKNOWN')
  })

  it('answers a peer 429 over the upload cap', async () => {
    const file = join(dir, 'data')
    await writeFile(file, blob.subarray(0, 1000))
    const a = await node(
      'a',
      { maxPeerUploads: 1 },
      new Map([[blobDigest, { path: file, size: blob.byteLength }]])
    )
    const first = get(a.url, path, { 'x-spegel-mirrored': 'true' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    const second = await get(a.url, path, { 'x-spegel-mirrored': 'true' })
    assert.equal(second.status, 429)
    await appendFile(file, blob.subarray(1000))
    assert.ok((await first).body.equals(blob))
  })

  it('answers 429 to more peers at once than its fan-out for one blob in flight, not to another blob', async () => {
    const file = join(dir, 'data')
    await writeFile(file, blob.subarray(0, 1000))
    const other = randomBytes(2000, 3)
    await writeFile(join(dir, 'other'), other)
    const a = await node(
      'a',
      { inFlightFanOut: 2 },
      new Map([
        [blobDigest, { path: file, size: blob.byteLength }],
        [digestOf(other), { path: join(dir, 'other'), size: other.byteLength }]
      ])
    )
    const peer = { 'x-spegel-mirrored': 'true' }
    const readers = [get(a.url, path, peer), get(a.url, path, peer)]
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal((await get(a.url, path, peer)).status, 429)
    assert.equal((await get(a.url, `/v2/team/app/blobs/${digestOf(other)}?ns=example.com`, peer)).status, 200)
    await appendFile(file, blob.subarray(1000))
    for (const reader of await Promise.all(readers)) assert.ok(reader.body.equals(blob))
  })

  it('does not serve in-flight content to the node’s own client (only to peers)', async () => {
    const file = join(dir, 'data')
    await writeFile(file, blob)
    const a = await node(
      'a',
      { flashCrowd: undefined },
      new Map([[blobDigest, { path: file, size: blob.byteLength }]])
    )
    const response = await get(a.url, path)
    assert.equal(response.status, 404)
  })

  /** Two nodes; whichever is elected "downloads" `content` into a file growing as containerd's would, and advertises it. */
  async function crowd(
    content: Buffer,
    options: Omit<MirrorHandlerInit, 'store' | 'router'> = {},
    stopAt = content.byteLength,
    advertise = true
  ): Promise<Node[]> {
    const file = join(dir, 'data')
    const nodes: Node[] = []
    for (const id of ['a', 'b']) {
      const inFlight = new Map<Digest, GrowingContent>()
      const n = await node(id, options, inFlight)
      n.handler.events.on('upstream', (event) => {
        if (!event.elected) return
        inFlight.set(blobDigest, { path: file, size: content.byteLength })
        void writeFile(file, '')
          .then(() => (advertise ? n.router.advertise([blobDigest]) : undefined))
          .then(() => grow(file, content, 256 * 1024, 10, stopAt))
      })
      nodes.push(n)
    }
    return nodes
  }

  it('has the node that lost the election receive the elected node’s download as it arrives, verified', async () => {
    const [a, b] = (await crowd(blob)) as [Node, Node]
    const answers = await Promise.all([get(a.url, path), get(b.url, path)])
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 404])
    assert.ok(answers.find((r) => r.status === 200)?.body.equals(blob))
    assert.equal([...a.upstream, ...b.upstream].filter((e) => e.elected).length, 1)
  })

  it('has the node that lost the election ask the elected node directly, before its download is advertised', async () => {
    const [a, b] = (await crowd(blob, {}, blob.byteLength, false)) as [Node, Node]
    const answers = await Promise.all([get(a.url, path), get(b.url, path)])
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 404])
    assert.ok(answers.find((r) => r.status === 200)?.body.equals(blob))
  })

  it('has a waiter that asks a claimer which lost go at once to the winner that claimer names', async () => {
    // The winner: serves the blob, advertises nothing (its claim has not spread yet).
    const winner = await startFakePeer(network, [], serveBytes(blob, blobDigest))
    // A claimer that lost: its claim still shows; asked for the blob, it answers 404 naming the winner.
    const winnerId = 'QmWinner'
    const loser = await startFakePeer(network, [claimKey(blobDigest)], (_req, res) => {
      res.writeHead(404, { [FETCHER_HEADER]: `${winnerId} ${urlOf(winner.server)}` })
      res.end()
    })
    stops.push(
      () => winner.close(),
      () => loser.close()
    )
    const w = await node('w', {}, undefined, 'records')
    const started = performance.now()
    const answer = await get(w.url, path)
    assert.equal(answer.status, 200)
    assert.ok(answer.body.equals(blob))
    assert.ok(loser.requests.length > 0 && winner.requests.length > 0)
    assert.ok(performance.now() - started < 1500, 'it waited for the deadline instead')
  })

  it('names the winner in its 404 to a peer asking for a blob this node lost the election at the arbiter for', async () => {
    const rivalServer = await listen((_req, res) => res.writeHead(404).end())
    const rival = network.createRouter({ id: 'rival', registryUrl: urlOf(rivalServer) })
    stops.push(async () => {
      await stopServer(rivalServer)
      await rival.close()
    })
    assert.deepEqual(await rival.claim?.(blobDigest), { won: true })
    const l = await node('l')
    const answer = get(l.url, path)
    await waitFor(async () => (await asked(l)).named !== undefined, 1000, 'the loss', 5)
    const { status, named } = await asked(l)
    assert.equal(status, 404)
    assert.equal(named, `rival ${urlOf(rivalServer)}`)
    assert.equal((await answer).status, 404) // the rival never fetches: after the wait, upstream
  })

  it('names the winner in its 404 to a peer asking for a blob this node lost the election on claim records for', async () => {
    // A rival ranked before node l claims the blob right after l does, so that l's election (it reads the claims
    // again after settling) is lost to it.
    let n = 0
    while (claimRank(blobDigest, `rival${n}`) > claimRank(blobDigest, 'l')) n++
    const rivalServer = await listen((_req, res) => res.writeHead(404).end())
    const rival = network.createRouter({ id: `rival${n}`, registryUrl: urlOf(rivalServer) })
    stops.push(async () => {
      await stopServer(rivalServer)
      await rival.close()
    })
    const l = await node('l', {}, undefined, 'records')
    const answer = get(l.url, path)
    await waitFor(
      async () => {
        for await (const p of rival.lookup(claimKey(blobDigest), { fresh: true }))
          if (p.id === 'l') return true
        return false
      },
      1000,
      'the claim of node l',
      1
    )
    await rival.advertise([claimKey(blobDigest)])
    await waitFor(async () => (await asked(l)).named !== undefined, 1000, 'the loss', 5)
    const { status, named } = await asked(l)
    assert.equal(status, 404)
    assert.equal(named, `rival${n} ${urlOf(rivalServer)}`)
    assert.equal((await answer).status, 404) // the rival never fetches: after the wait, upstream
  })

  /** A peer's GET of the blob from `n`: the status, and the fetcher it names. */
  async function asked(n: Node): Promise<{ status: number; named: string | undefined }> {
    const response = await get(n.url, path, { 'x-spegel-mirrored': 'true' })
    return { status: response.status, named: response.headers[FETCHER_HEADER] as string | undefined }
  }

  it('never elects a fetcher for a blob of a filtered registry (its content is never involved)', async () => {
    const [a, b] = [
      await node('a', { filters: [/^example\.com\//] }),
      await node('b', { filters: [/^example\.com\//] })
    ]
    const answers = await Promise.all([get(a.url, path), get(b.url, path)])
    assert.deepEqual(
      answers.map((r) => r.status),
      [404, 404]
    )
    assert.deepEqual([...a.upstream, ...b.upstream], [])
    const claimers = []
    for await (const p of a.router.lookup(claimKey(blobDigest))) claimers.push(p)
    assert.deepEqual(claimers, [])
  })

  it('answers 404 after the wait when the elected node never serves a download', async () => {
    const [a, b] = [
      await node('a', { flashCrowd: { selfId: 'a', waitMs: 300 } }),
      await node('b', { flashCrowd: { selfId: 'b', waitMs: 300 } })
    ]
    const answers = await Promise.all([get(a.url, path), get(b.url, path)])
    assert.deepEqual(
      answers.map((r) => r.status),
      [404, 404]
    )
    assert.deepEqual([...a.upstream, ...b.upstream].map((e) => e.elected).sort(), [false, true])
  })

  it('answers 404 when the elected node’s download is not the blob (wrong bytes never reach the client)', async () => {
    const wrong = Buffer.from(blob)
    wrong.writeUInt8(wrong.readUInt8(12345) ^ 1, 12345)
    const [a, b] = (await crowd(wrong)) as [Node, Node]
    const answers = await Promise.all([get(a.url, path), get(b.url, path)])
    assert.deepEqual(
      answers.map((r) => r.status),
      [404, 404]
    )
  })

  it('answers 404 when the elected node’s download stops growing', async () => {
    const [a, b] = (await crowd(blob, { stallTimeoutMs: 500 }, 1024 * 1024)) as [Node, Node]
    const answers = await Promise.all([get(a.url, path), get(b.url, path)])
    assert.deepEqual(
      answers.map((r) => r.status),
      [404, 404]
    )
  })
})

describe('the fetcher a peer names (x-kadmirror-fetcher)', () => {
  it('takes a peer id and a bare http(s) origin', () => {
    assert.deepEqual(namedFetcher('12D3KooWabc http://10.0.0.5:5000'), {
      id: '12D3KooWabc',
      registryUrl: 'http://10.0.0.5:5000'
    })
    assert.equal(namedFetcher('x https://[fd00::5]:5000')?.registryUrl, 'https://[fd00::5]:5000')
  })

  it('refuses a path, a query, credentials, another scheme, or anything more', () => {
    for (const value of [
      undefined,
      '',
      'id',
      'id http://10.0.0.5:5000/v2/',
      'id http://10.0.0.5:5000?x=1',
      'id http://user:pw@10.0.0.5:5000',
      'id file:///etc/passwd',
      'id ftp://10.0.0.5',
      'id http://10.0.0.5:5000 extra',
      'a/b http://10.0.0.5:5000',
      'id http://10.0.0.5:80'
    ])
      assert.equal(namedFetcher(value), undefined, String(value))
  })

  it('returns, for any header value, nothing or an origin with no path', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), (id, url) => {
        const named = namedFetcher(`${id} ${url}`)
        return named === undefined || new URL(named.registryUrl).origin === named.registryUrl
      })
    )
  })
})
