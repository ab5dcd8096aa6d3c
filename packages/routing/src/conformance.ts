/**
 * The Router conformance suite: behaviour every Router must have, as mocha tests. `setup(n)` returns `n`
 * routers that can reach each other (and are ready); `teardown` closes them.
 *
 * @example
 * ```ts
 * import { routerConformance } from '@kadmirror/routing/conformance'
 * import { createMemoryNetwork } from '@kadmirror/routing'
 *
 * routerConformance('MemoryRouter', {
 *   async setup(n) {
 *     const network = createMemoryNetwork()
 *     return Array.from({ length: n }, (_, i) => network.createRouter({ registryUrl: `http://node-${i}:5000` }))
 *   },
 *   async teardown(routers) { await Promise.all(routers.map((r) => r.close())) }
 * })
 * ```
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { type Provider, type Router, RouterClosedError } from './router.ts'

/** How the suite makes routers. */
export interface RouterConformanceOptions {
  /** `count` connected, ready routers. */
  setup(count: number): Promise<Router[]>
  teardown(routers: Router[]): Promise<void>
  /** Time advertisements may take to be visible, in ms; default 5000. */
  settleMs?: number
}

/** Collects a lookup. */
export async function collectProviders(router: Router, key: string, count?: number): Promise<Provider[]> {
  const out: Provider[] = []
  for await (const provider of router.lookup(key, count === undefined ? {} : { count })) out.push(provider)
  return out
}

/** Retries `check` until it passes or `ms` pass. */
async function eventually(ms: number, check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      await check()
      return
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

const uniqueKey = (): string =>
  `sha256:${Buffer.from(randomUUID().replaceAll('-', '').repeat(2), 'hex').toString('hex')}`

/** Gives the suite's `i`-th router of the current test. */
type NodeOf = (i: number) => Router

/** Advertising, lookups and withdrawals. */
function lookupTests(node: NodeOf, settleMs: number): void {
  it('finds a key advertised by another node', async () => {
    const key = uniqueKey()
    await node(0).advertise([key])
    await eventually(settleMs, async () => {
      const providers = await collectProviders(node(1), key)
      assert.equal(providers.length, 1)
      assert.match(providers[0]?.registryUrl ?? '', /^https?:\/\//)
    })
  })

  it('finds every node that advertised a key, each once', async () => {
    const key = uniqueKey()
    await node(0).advertise([key, key])
    await node(1).advertise([key])
    await eventually(settleMs, async () => {
      const providers = await collectProviders(node(2), key)
      assert.equal(providers.length, 2)
      assert.equal(new Set(providers.map((p) => p.id)).size, 2)
    })
  })

  it('never yields itself', async () => {
    const key = uniqueKey()
    await node(0).advertise([key])
    await node(1).advertise([key])
    await eventually(settleMs, async () => {
      const providers = await collectProviders(node(0), key)
      assert.equal(providers.length, 1)
    })
  })

  it('stops after count providers', async () => {
    const key = uniqueKey()
    await node(0).advertise([key])
    await node(1).advertise([key])
    await eventually(settleMs, async () => assert.equal((await collectProviders(node(2), key)).length, 2))
    assert.equal((await collectProviders(node(2), key, 1)).length, 1)
  })

  it('ends with no provider for a key nobody advertised', async () => {
    assert.deepEqual(await collectProviders(node(1), uniqueKey()), [])
  })

  it('no longer finds a withdrawn key', async () => {
    const key = uniqueKey()
    await node(0).advertise([key])
    await eventually(settleMs, async () => assert.equal((await collectProviders(node(1), key)).length, 1))
    await node(0).withdraw([key])
    await eventually(settleMs, async () => assert.equal((await collectProviders(node(2), key)).length, 0))
  })
}

/** Readiness, aborts and close. */
function lifecycleTests(node: NodeOf): void {
  it('is ready once it knows a peer', async () => {
    assert.equal(await node(0).ready(), true)
  })

  it('ends a lookup when its signal aborts', async () => {
    const controller = new AbortController()
    controller.abort()
    const out: Provider[] = []
    for await (const provider of node(1).lookup(uniqueKey(), { signal: controller.signal }))
      out.push(provider)
    assert.deepEqual(out, [])
  })

  it('rejects use after close with RouterClosedError', async () => {
    await node(2).close()
    await assert.rejects(node(2).advertise([uniqueKey()]), RouterClosedError)
    await assert.rejects(node(2).ready(), RouterClosedError)
    assert.throws(() => node(2).lookup(uniqueKey()), RouterClosedError)
    const claim = node(2).claim?.bind(node(2))
    if (claim !== undefined) await assert.rejects(claim(uniqueKey()), RouterClosedError)
  })
}

/** Claims ({@link Router.claim}), for routers that have them. */
function claimTests(node: NodeOf): void {
  /** `router.claim`, or a skip of the test when the router has none. */
  const claimOf = (ctx: Mocha.Context, router: Router): NonNullable<Router['claim']> => {
    const claim = router.claim
    if (claim === undefined) return ctx.skip() as never
    return claim.bind(router)
  }

  it('gives a claim to the first node to claim a key, and names it to the others', async function () {
    const key = uniqueKey()
    assert.deepEqual(await claimOf(this, node(0))(key), { won: true })
    const second = await claimOf(this, node(1))(key)
    const third = await claimOf(this, node(2))(key)
    assert.equal(second.won, false)
    assert.match(second.won ? '' : (second.holder?.registryUrl ?? ''), /^https?:\/\//)
    assert.equal(third.won ? undefined : third.holder?.id, second.won ? 'won' : second.holder?.id)
    assert.deepEqual(await claimOf(this, node(0))(key), { won: true })
  })

  it('names to a later claimer the nodes that claimed before it and lost', async function () {
    const key = uniqueKey()
    assert.deepEqual(await claimOf(this, node(0))(key), { won: true })
    const second = await claimOf(this, node(1))(key)
    const third = await claimOf(this, node(2))(key)
    const holder = second.won ? undefined : second.holder?.id
    assert.deepEqual(second.won ? [] : (second.waiting ?? []), [])
    assert.equal(third.won ? undefined : third.holder?.id, holder)
    const waiting = third.won ? [] : (third.waiting ?? [])
    assert.equal(waiting.length, 1)
    assert.notEqual(waiting[0]?.id, holder)
    assert.match(waiting[0]?.registryUrl ?? '', /^https?:\/\//)
  })

  it('gives a key claimed by every node at once to exactly one', async function () {
    const key = uniqueKey()
    const answers = await Promise.all([0, 1, 2].map((i) => claimOf(this, node(i))(key)))
    assert.equal(answers.filter((a) => a.won).length, 1)
    const holders = new Set(
      answers.map((a) => (a.won ? undefined : a.holder?.id)).filter((id) => id !== undefined)
    )
    assert.equal(holders.size, 1)
  })

  it('answers a peek with the holder, and claims nothing', async function () {
    const key = uniqueKey()
    assert.deepEqual(await claimOf(this, node(1))(key, { peek: true }), { won: false })
    assert.deepEqual(await claimOf(this, node(2))(key), { won: true })
    const peek = await claimOf(this, node(1))(key, { peek: true })
    assert.equal(peek.won, false)
    assert.notEqual(peek.won ? undefined : peek.holder, undefined)
  })

  it('rejects a claim whose signal aborted', async function () {
    const controller = new AbortController()
    controller.abort()
    await assert.rejects(claimOf(this, node(1))(uniqueKey(), { signal: controller.signal }))
  })
}

/** Registers the conformance tests of a Router implementation named `name`. */
export function routerConformance(name: string, options: RouterConformanceOptions): void {
  const settleMs = options.settleMs ?? 5000

  describe(`Router conformance: ${name}`, () => {
    let routers: Router[] = []
    const node = (i: number): Router => routers[i] as Router

    beforeEach(async () => {
      routers = await options.setup(3)
    })

    afterEach(async () => {
      await options.teardown(routers)
    })

    lifecycleTests(node)
    lookupTests(node, settleMs)
    claimTests(node)
  })
}
