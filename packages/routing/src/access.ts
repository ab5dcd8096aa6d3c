/**
 * Who may talk to a node: CIDR allow lists (for the router port and the mirror port) and the private-network key
 * (libp2p's pre-shared key: only nodes holding it can open a connection to the DHT at all).
 */
import { randomBytes } from 'node:crypto'
import { BlockList, isIP } from 'node:net'
import { InvalidAccessRuleError } from './errors.ts'

/** Addresses allowed to connect: an address is allowed when it lies in one of the networks. */
export interface AllowList {
  /** The networks, as given (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`). */
  readonly networks: readonly string[]
  /** True when `address` (IPv4, IPv6 or IPv4-mapped IPv6) lies in one of the networks. */
  allows(address: string): boolean
}

/**
 * An allow list of CIDR networks (a bare address is a /32 or /128).
 * @throws {InvalidAccessRuleError} for an entry that is not an IP network, or an empty list.
 */
export function createAllowList(networks: readonly string[]): AllowList {
  if (networks.length === 0) throw new InvalidAccessRuleError('an allow list needs at least one network')
  const list = new BlockList()
  for (const network of networks) {
    const [address = '', prefix, ...rest] = network.trim().split('/')
    const family = isIP(address)
    const bits = prefix === undefined ? (family === 6 ? 128 : 32) : Number(prefix)
    if (
      family === 0 ||
      rest.length > 0 ||
      !/^[0-9]{0,3}$/.test(prefix ?? '') ||
      bits > (family === 6 ? 128 : 32)
    )
      throw new InvalidAccessRuleError(`not an IP network: ${JSON.stringify(network)}`)
    list.addSubnet(address, bits, family === 6 ? 'ipv6' : 'ipv4')
  }
  return {
    networks: [...networks],
    allows(address) {
      const mapped = /^::ffff:([0-9.]+)$/i.exec(address)?.[1]
      const plain = mapped ?? address
      const family = isIP(plain)
      if (family === 0) return false
      return list.check(plain, family === 6 ? 'ipv6' : 'ipv4')
    }
  }
}

const PSK_HEADER = '/key/swarm/psk/1.0.0/'

/** A new private-network key in the swarm key format go-libp2p and js-libp2p read (`/key/swarm/psk/1.0.0/`). */
export function generatePrivateNetworkKey(): string {
  return `${PSK_HEADER}\n/base16/\n${randomBytes(32).toString('hex')}\n`
}

/**
 * Checks a private-network key file's content and returns it as bytes for libp2p.
 * @throws {InvalidAccessRuleError} when it is not a v1 swarm key with 32 bytes in base16.
 */
export function parsePrivateNetworkKey(text: string): Uint8Array {
  const lines = text.split(/\r?\n/).map((line) => line.trim())
  if (lines[0] !== PSK_HEADER || lines[1] !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(lines[2] ?? ''))
    throw new InvalidAccessRuleError(
      `not a private-network key: expected "${PSK_HEADER}", "/base16/" and 64 hex digits (make one with \`kadmirror generate-psk\`)`
    )
  return new TextEncoder().encode(`${PSK_HEADER}\n/base16/\n${(lines[2] as string).toLowerCase()}\n`)
}
