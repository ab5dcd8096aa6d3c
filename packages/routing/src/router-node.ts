/**
 * The libp2p node of a router, made from the router's options: its peer key (given, or kept in the data dir), the
 * access rules, and libp2p's settings.
 */
import { createAllowList, parsePrivateNetworkKey } from './access.ts'
import { createRouterLibp2p } from './libp2p-node.ts'
import { loadOrCreatePeerKey } from './peer-key.ts'
import type { ProviderDatastore } from './provider-datastore.ts'
import type { Libp2pRouterInit, Settings } from './router-settings.ts'

/**
 * Creates the libp2p node of a router with its settings.
 * @throws {InvalidPeerKeyError} when the peer key in `dataDir` is invalid; {@link InvalidAccessRuleError} for bad access rules.
 */
export async function createRouterNode(
  init: Libp2pRouterInit,
  settings: Settings,
  datastore: ProviderDatastore
) {
  const privateKey =
    init.privateKey ?? (init.dataDir === undefined ? undefined : await loadOrCreatePeerKey(init.dataDir))
  return createRouterLibp2p({
    ...(init.listen === undefined ? {} : { listen: init.listen }),
    ...(init.announce === undefined ? {} : { announce: init.announce }),
    ...(privateKey === undefined ? {} : { privateKey }),
    ...(init.maxConnections === undefined ? {} : { maxConnections: init.maxConnections }),
    ...(init.metrics === undefined ? {} : { metrics: init.metrics }),
    ...(init.inboundConnectionThreshold === undefined
      ? {}
      : { inboundConnectionThreshold: init.inboundConnectionThreshold }),
    ...(init.privateNetworkKey === undefined
      ? {}
      : { privateNetworkKey: parsePrivateNetworkKey(init.privateNetworkKey) }),
    ...(init.allowedNetworks === undefined ? {} : { allowedNetworks: createAllowList(init.allowedNetworks) }),
    allowLoopback: settings.allowLoopback,
    protocol: settings.protocol,
    membership: settings.membership,
    datastore,
    providerValidityMs: settings.providerValidityMs,
    log: settings.log
  })
}
