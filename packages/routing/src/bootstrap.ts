/**
 * Bootstrappers tell a new node where some other nodes are: a static list of multiaddrs, the A/AAAA records
 * of a DNS name (a headless Service in DaemonSet mode), or an HTTP(S) bootstrapper (see http-bootstrap.ts).
 * Peers are described as libp2p AddrInfo JSON (`{"ID":"12D3Koo…","Addrs":["/ip4/…/tcp/5001"]}`), the shape
 * Spegel's HTTP bootstrap speaks; the ID may be empty, and is then learnt in the handshake.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { DEFAULT_ROUTER_PORT } from './constants.ts'
import { InvalidBootstrapPeerError } from './errors.ts'

/** A peer to dial: its id when known, and its multiaddrs (strings). */
export interface BootstrapPeer {
  id?: string
  addresses: string[]
}

/** Options of {@link Bootstrapper.peers}. */
export interface BootstrapOptions {
  signal?: AbortSignal
}

/** Where to find other nodes. */
export interface Bootstrapper {
  /**
   * Nodes to dial now.
   * @throws when the source cannot be read (the router logs it and retries with backoff).
   */
  peers(options?: BootstrapOptions): Promise<BootstrapPeer[]>
  /** Tells the source that this node is up (HTTP bootstrappers register it); optional. */
  register?(self: BootstrapPeer, options?: BootstrapOptions): Promise<void>
  /** Tells the source that this node leaves; optional. */
  unregister?(self: BootstrapPeer, options?: BootstrapOptions): Promise<void>
  /** Releases what the bootstrapper holds (HTTP agents, file watchers). */
  close?(): Promise<void>
}

/** One AddrInfo as JSON. */
export interface AddrInfoJson {
  ID: string
  Addrs: string[]
}

/**
 * Completes an address without a transport (`/ip4/10.0.0.1`, as Spegel's DNS bootstrap gives) with
 * `/tcp/<port>`, and checks that it parses.
 * @throws {InvalidBootstrapPeerError} for a string that is not a multiaddr.
 */
export function completeAddress(address: string, port: number = DEFAULT_ROUTER_PORT): string {
  let parsed: ReturnType<typeof multiaddr>
  try {
    parsed = multiaddr(address)
  } catch (err) {
    throw new InvalidBootstrapPeerError(
      `${JSON.stringify(address.slice(0, 100))} is not a multiaddr: ${(err as Error).message}`
    )
  }
  const components = parsed.getComponents()
  if (components.length === 1 && ['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(components[0]?.name ?? '')) {
    return `${parsed.toString()}/tcp/${port}`
  }
  return parsed.toString()
}

/**
 * Parses a bootstrap answer into peers; at most `limit` entries are used. Three shapes seen in the field are
 * read: AddrInfo objects (Spegel's `/id`, our `/bootstrap-nodes`: `[{"ID":"12D3Koo…","Addrs":["/ip4/…/tcp/5001"]}]`,
 * the ID optional), Gardener's node list (`[{"IP":"10.0.0.1","Zone":"eu-1a"}]`) and plain IP strings
 * (`["10.0.0.1", "fd00::1"]`); an IP without a port is dialled on the router `port`. A single object is accepted
 * as a one-entry array.
 * @throws {InvalidBootstrapPeerError} for anything else: not JSON, another shape, a bad peer id, IP or multiaddr.
 */
export function parseAddrInfos(
  text: string,
  options: { limit?: number; port?: number } = {}
): BootstrapPeer[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new InvalidBootstrapPeerError(`bootstrap answer is not JSON: ${(err as Error).message}`)
  }
  const list = Array.isArray(value) ? value : [value]
  return list
    .slice(0, options.limit ?? list.length)
    .map((entry, i) => parseBootstrapEntry(entry, i, options.port))
}

/** The multiaddr of an IP address on the router `port`. @throws {InvalidBootstrapPeerError} when `ip` is not one. */
function ipAddress(ip: string, index: number, port = DEFAULT_ROUTER_PORT): string {
  const family = isIP(ip)
  if (family === 0)
    throw new InvalidBootstrapPeerError(
      `entry ${index}: ${JSON.stringify(ip.slice(0, 80))} is not an IP address`
    )
  return `/${family === 4 ? 'ip4' : 'ip6'}/${ip}/tcp/${port}`
}

/** One entry of a bootstrap answer, in any of the shapes {@link parseAddrInfos} reads. */
function parseBootstrapEntry(entry: unknown, index: number, port?: number): BootstrapPeer {
  if (typeof entry === 'string') return { addresses: [ipAddress(entry, index, port)] }
  if (
    typeof entry === 'object' &&
    entry !== null &&
    !Array.isArray(entry) &&
    'IP' in entry &&
    !('Addrs' in entry)
  ) {
    const { IP } = entry as { IP?: unknown }
    if (typeof IP !== 'string') throw new InvalidBootstrapPeerError(`entry ${index}: IP is not a string`)
    return { addresses: [ipAddress(IP, index, port)] }
  }
  return parseAddrInfo(entry, index, port)
}

/** Validates one AddrInfo object. */
export function parseAddrInfo(entry: unknown, index = 0, port?: number): BootstrapPeer {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new InvalidBootstrapPeerError(`entry ${index} is not an object`)
  }
  const { ID, Addrs } = entry as { ID?: unknown; Addrs?: unknown }
  if (ID !== undefined && ID !== null && typeof ID !== 'string')
    throw new InvalidBootstrapPeerError(`entry ${index}: ID is not a string`)
  if (!Array.isArray(Addrs) || Addrs.length === 0 || !Addrs.every((a) => typeof a === 'string')) {
    throw new InvalidBootstrapPeerError(`entry ${index}: Addrs must be a non-empty array of strings`)
  }
  const peer: BootstrapPeer = { addresses: (Addrs as string[]).map((a) => completeAddress(a, port)) }
  if (typeof ID === 'string' && ID !== '') {
    try {
      peer.id = peerIdFromString(ID).toString()
    } catch (err) {
      throw new InvalidBootstrapPeerError(
        `entry ${index}: ID ${JSON.stringify(ID.slice(0, 80))} is not a peer id: ${(err as Error).message}`
      )
    }
  }
  return peer
}

/** A peer as AddrInfo JSON. */
export function toAddrInfo(peer: BootstrapPeer): AddrInfoJson {
  return { ID: peer.id ?? '', Addrs: peer.addresses }
}

/**
 * A fixed list of multiaddrs, with or without `/p2p/<id>`.
 * @throws {InvalidBootstrapPeerError} at creation for an address that does not parse.
 */
export function staticBootstrapper(addresses: readonly string[]): Bootstrapper {
  const peers = addresses.map((address): BootstrapPeer => {
    const complete = completeAddress(address)
    const id = multiaddr(complete)
      .getComponents()
      .find((c) => c.name === 'p2p')?.value
    return id === undefined ? { addresses: [complete] } : { id, addresses: [complete] }
  })
  return { peers: async () => peers.map((p) => ({ ...p, addresses: [...p.addresses] })) }
}

/** Options of {@link dnsBootstrapper}. */
export interface DnsBootstrapperInit {
  /** The name to resolve, such as a headless Service `kadmirror.kube-system.svc.cluster.local`. */
  name: string
  /** Router port of the nodes behind the name; default 5001. */
  port?: number
  /** Most addresses used per address family (Spegel: 3); default 3. */
  limit?: number
}

/**
 * The A and AAAA records of a name, each dialled on the router port; peer ids are learnt in the handshake.
 * @throws when the name does not resolve.
 */
export function dnsBootstrapper(init: DnsBootstrapperInit): Bootstrapper {
  const port = init.port ?? DEFAULT_ROUTER_PORT
  const limit = init.limit ?? 3
  return {
    async peers() {
      const records = await lookup(init.name, { all: true })
      const sorted = records.map((r) => r.address).sort()
      const v4 = sorted.filter((a) => isIP(a) === 4).slice(0, limit)
      const v6 = sorted.filter((a) => isIP(a) === 6).slice(0, limit)
      return [...v4.map((a) => `/ip4/${a}/tcp/${port}`), ...v6.map((a) => `/ip6/${a}/tcp/${port}`)].map(
        (address) => ({
          addresses: [address]
        })
      )
    }
  }
}
