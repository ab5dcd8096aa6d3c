// Real libp2p clusters on 127.0.0.1 for tests: the first node listens, the others bootstrap from it.

import { waitFor } from '@kadmirror/test-support'
import {
  createLibp2pRouter,
  type Libp2pRouter,
  type Libp2pRouterInit,
  staticBootstrapper
} from '../src/index.ts'

export { waitFor }

/** Starts one node on an ephemeral loopback port. */
export function startNode(init: Libp2pRouterInit = {}): Promise<Libp2pRouter> {
  return createLibp2pRouter({ listen: ['/ip4/127.0.0.1/tcp/0'], allowLoopback: true, ...init })
}

/** Starts `count` nodes that bootstrap from the first and waits until every node knows every other. */
export async function startCluster(count: number, init: Libp2pRouterInit = {}): Promise<Libp2pRouter[]> {
  const first = await startNode(init)
  const seed = first.addresses()
  const rest = await Promise.all(
    Array.from({ length: count - 1 }, () =>
      startNode({ bootstrapper: staticBootstrapper(seed.map((a) => `${a}/p2p/${first.peerId}`)), ...init })
    )
  )
  const nodes = [first, ...rest]
  await waitFor(
    () => nodes.every((n) => n.peers().length === count - 1),
    20_000,
    `a full mesh of ${count} nodes`
  )
  return nodes
}

/** Closes every node. */
export async function stopAll(nodes: readonly Libp2pRouter[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.close()))
}
