/**
 * The one definition of every command's options: flag name, Spegel's environment variable, default, and parser.
 * The CLI builds its parser from it, resolves each value with the precedence flag > environment (`KADMIRROR_<NAME>`,
 * then Spegel's unprefixed `<NAME>`) > config file > default, and the README's option tables are generated from it
 * (a test checks them).
 */
import { createAllowList } from '@kadmirror/routing/access'
import {
  InvalidValueError,
  parseByteSize,
  parseDuration,
  parseHttpUrl,
  parseInteger,
  parseListenAddress,
  parseLogLevel,
  parseRegex
} from './values.ts'

/** One option of a command. */
export interface OptionSpec {
  /** The flag without dashes, as Spegel names it (`registry-addr`); also the config file key. */
  flag: string
  /** Spegel's environment variable (`REGISTRY_ADDR`); `KADMIRROR_` + it is accepted too. */
  env: string
  description: string
  /** The default in the flag's own syntax; none for options that are off or empty by default. */
  default?: string
  /** Takes several values (`--mirrored-registries a b`; comma-separated in the environment). */
  list?: boolean
  /** A boolean: `--flag`, `--flag=true`, `--flag=false`. */
  boolean?: boolean
  required?: boolean
  /** Which Spegel release has it, when not both. */
  since?: 'v0.7.4 only' | 'main' | 'kadmirror'
  /** Checks one value (each item of a list); throws {@link InvalidValueError}. */
  check?(value: string): void
}

const duration = (value: string): void => void parseDuration(value)
const address = (value: string): void => void parseListenAddress(value)
const url = (value: string): void => void parseHttpUrl(value)
const regex = (value: string): void => void parseRegex(value)
const network = (value: string): void => {
  try {
    createAllowList([value])
  } catch (err) {
    throw new InvalidValueError((err as Error).message)
  }
}

/** The global options (before the command). */
export const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  {
    flag: 'log-level',
    env: 'LOG_LEVEL',
    default: 'INFO',
    description: 'Minimum log level: DEBUG, INFO, WARN or ERROR.',
    check: (v) => void parseLogLevel(v)
  }
]

const REGISTRY_CONFIG_PATH: OptionSpec = {
  flag: 'containerd-registry-config-path',
  env: 'CONTAINERD_REGISTRY_CONFIG_PATH',
  default: '/etc/containerd/certs.d',
  description: 'Directory where the mirror configuration (hosts.toml) is written.'
}

const MIRRORED_REGISTRIES: OptionSpec = {
  flag: 'mirrored-registries',
  env: 'MIRRORED_REGISTRIES',
  list: true,
  description: 'Registries to mirror, as URLs; empty mirrors every registry.',
  check: url
}

/** Options of `configuration` (alias `configure`). */
export const CONFIGURATION_OPTIONS: readonly OptionSpec[] = [
  REGISTRY_CONFIG_PATH,
  MIRRORED_REGISTRIES,
  {
    flag: 'mirror-targets',
    env: 'MIRROR_TARGETS',
    list: true,
    required: true,
    description:
      'Mirrors containerd asks first, in order (this node’s registry, say http://$(NODE_IP):30020).',
    check: url
  },
  {
    flag: 'resolve-tags',
    env: 'RESOLVE_TAGS',
    boolean: true,
    default: 'true',
    description: 'Let containerd resolve tags through the mirror.'
  },
  {
    flag: 'prepend-existing',
    env: 'PREPEND_EXISTING',
    boolean: true,
    default: 'false',
    description: 'Keep the existing mirror configuration after ours.'
  }
]

/** Options of `registry`. */
export const REGISTRY_OPTIONS: readonly OptionSpec[] = [
  {
    flag: 'bootstrap-kind',
    env: 'BOOTSTRAP_KIND',
    required: true,
    description: 'How to find the first peers: dns, http or static.',
    check: (v) => {
      if (!['dns', 'http', 'static'].includes(v))
        throw new InvalidValueError(`${JSON.stringify(v)} is not a bootstrap kind (dns, http or static)`)
    }
  },
  {
    flag: 'dns-bootstrap-domain',
    env: 'DNS_BOOTSTRAP_DOMAIN',
    description: 'Domain to resolve when bootstrapping with DNS (a headless Service).'
  },
  {
    flag: 'http-bootstrap-addr',
    env: 'HTTP_BOOTSTRAP_ADDR',
    description: 'Address to serve this node’s /id on for HTTP bootstrap; empty serves none.',
    check: address
  },
  {
    flag: 'http-bootstrap-peer',
    env: 'HTTP_BOOTSTRAP_PEER',
    since: 'v0.7.4 only',
    description: 'URL of a peer’s /id to bootstrap from.',
    check: url
  },
  {
    flag: 'http-bootstrap-url',
    env: 'HTTP_BOOTSTRAP_URL',
    since: 'main',
    description:
      'URL of an HTTP bootstrap endpoint (a peer’s /id, or a bootstrap server’s /bootstrap-nodes).',
    check: url
  },
  {
    flag: 'http-bootstrap-cert-dir',
    env: 'HTTP_BOOTSTRAP_CERT_DIR',
    since: 'main',
    description: 'Directory with ca.crt, tls.crt and tls.key for HTTP bootstrap over mTLS.'
  },
  {
    flag: 'static-bootstrap-peers',
    env: 'STATIC_BOOTSTRAP_PEERS',
    list: true,
    description: 'Multiaddrs of the peers to bootstrap from (/ip4/10.0.0.2/tcp/5001/p2p/12D3Koo…).'
  },
  {
    flag: 'metrics-addr',
    env: 'METRICS_ADDR',
    default: ':9090',
    description: 'Address to serve /metrics and the debug page on.',
    check: address
  },
  {
    flag: 'containerd-sock',
    env: 'CONTAINERD_SOCK',
    default: '/run/containerd/containerd.sock',
    description: 'containerd’s gRPC socket.'
  },
  {
    flag: 'containerd-namespace',
    env: 'CONTAINERD_NAMESPACE',
    default: 'k8s.io',
    description: 'containerd namespace to serve images from.'
  },
  {
    flag: 'containerd-content-path',
    env: 'CONTAINERD_CONTENT_PATH',
    default: '/var/lib/containerd/io.containerd.content.v1.content',
    description: 'containerd’s content directory (read directly when readable).'
  },
  {
    flag: 'data-dir',
    env: 'DATA_DIR',
    description: 'Directory where the peer key is kept; empty: a new peer id on every start.'
  },
  {
    flag: 'router-addr',
    env: 'ROUTER_ADDR',
    default: ':5001',
    description: 'Address the router (libp2p) listens on.',
    check: address
  },
  {
    flag: 'registry-addr',
    env: 'REGISTRY_ADDR',
    default: ':5000',
    description:
      'Address the registry mirror listens on. Spegel peers assume every peer serves on the port they use: keep 5000 in a mixed cluster.',
    check: address
  },
  MIRRORED_REGISTRIES,
  {
    flag: 'registry-filters',
    env: 'REGISTRY_FILTERS',
    list: true,
    description:
      'Regular expressions; a request whose registry/repository[:tag] matches one is not mirrored.',
    check: regex
  },
  {
    flag: 'mirror-resolve-timeout',
    env: 'MIRROR_RESOLVE_TIMEOUT',
    default: '20ms',
    description: 'Longest time spent finding a peer before answering 404.',
    check: duration
  },
  {
    flag: 'mirror-resolve-retries',
    env: 'MIRROR_RESOLVE_RETRIES',
    default: '3',
    description: 'Peers tried after the first.',
    check: (v) => void parseInteger(v, 0, 100)
  },
  {
    flag: 'debug-web-enabled',
    env: 'DEBUG_WEB_ENABLED',
    boolean: true,
    default: 'true',
    description: 'Serve the debug page at /debug/web/ on the metrics address.'
  },
  {
    flag: 'store',
    env: 'STORE',
    since: 'kadmirror',
    default: 'containerd',
    description:
      'Where content comes from: containerd, or oci-layout:<dir> (an OCI image layout; runs without containerd).',
    check: (v) => void parseStore(v)
  },
  {
    flag: 'libp2p-metrics',
    env: 'LIBP2P_METRICS',
    since: 'kadmirror',
    boolean: true,
    default: 'true',
    description: 'Also export libp2p’s own metrics (connections, streams, protocol traffic) on /metrics.'
  },
  {
    flag: 'allow-loopback',
    env: 'ALLOW_LOOPBACK',
    since: 'kadmirror',
    boolean: true,
    default: 'false',
    description: 'Announce and accept loopback addresses: a cluster of nodes on one machine (127.0.0.1).'
  },
  {
    flag: 'private-network-key-file',
    env: 'PRIVATE_NETWORK_KEY_FILE',
    since: 'kadmirror',
    description:
      'Swarm key file (make one with `kadmirror generate-psk`): only nodes holding the same key can join the DHT. Spegel nodes cannot join a private network.'
  },
  {
    flag: 'membership',
    env: 'MEMBERSHIP',
    since: 'kadmirror',
    default: 'mesh',
    description:
      'How the node knows the cluster: mesh (a connection to every DHT node, as Spegel) or gossip (every kadmirror member known by gossip, at most --peer-connections connections, for clusters of thousands of nodes).',
    check: (v) => {
      if (v !== 'mesh' && v !== 'gossip')
        throw new InvalidValueError(`${JSON.stringify(v)} is not a membership (mesh or gossip)`)
    }
  },
  {
    flag: 'peer-connections',
    env: 'PEER_CONNECTIONS',
    since: 'kadmirror',
    default: '64',
    description: 'With --membership=gossip: most connections to other kadmirror nodes.',
    check: (v) => void parseInteger(v, 8, 10_000)
  },
  {
    flag: 'datagram-lookups',
    env: 'DATAGRAM_LOOKUPS',
    since: 'kadmirror',
    boolean: true,
    default: 'true',
    description:
      'With --membership=gossip: ask members without a connection over UDP on the router port (open it for UDP as for TCP); false: dial them.'
  },
  {
    flag: 'router-allowed-networks',
    env: 'ROUTER_ALLOWED_NETWORKS',
    since: 'kadmirror',
    list: true,
    description: 'CIDR networks that may connect to the router port (others are refused); empty: any.',
    check: network
  },
  {
    flag: 'registry-allowed-networks',
    env: 'REGISTRY_ALLOWED_NETWORKS',
    since: 'kadmirror',
    list: true,
    description: 'CIDR networks that may connect to the registry mirror (loopback always may); empty: any.',
    check: network
  },
  {
    flag: 'verify-before-forwarding',
    env: 'VERIFY_BEFORE_FORWARDING',
    since: 'kadmirror',
    boolean: true,
    default: 'true',
    description:
      'Receive a blob from peers whole and check its digest before sending its first byte (spooled under --data-dir/spool, else the temporary directory): a lying peer then never fails a pull. false forwards bytes as they arrive.'
  },
  {
    flag: 'hash-threads',
    env: 'HASH_THREADS',
    since: 'kadmirror',
    default: 'auto',
    description:
      'Worker threads that hash blobs received from peers; 0 hashes on the main thread (SHA-256 runs at over 1 GB/s where the CPU has SHA extensions, and each worker costs about 10 MiB). auto: 0.',
    check: (v) => {
      if (v !== 'auto') void parseInteger(v, 0, 16)
    }
  },
  {
    flag: 'multi-peer-threshold',
    env: 'MULTI_PEER_THRESHOLD',
    since: 'kadmirror',
    default: '32MiB',
    description:
      'Blobs of at least this size are fetched from several peers at once, in pieces (spooled under --data-dir/spool, else the temporary directory, in both verify modes).',
    check: (v) => void parseByteSize(v)
  },
  {
    flag: 'piece-size',
    env: 'PIECE_SIZE',
    since: 'kadmirror',
    default: '8MiB',
    description: 'Size of each piece of a blob fetched from several peers (a Range request each).',
    check: (v) => void parseByteSize(v, 1024 ** 3)
  },
  {
    flag: 'max-piece-providers',
    env: 'MAX_PIECE_PROVIDERS',
    since: 'kadmirror',
    default: '4',
    description:
      'Most peers fetching pieces of one blob at once; 1 fetches every blob from one peer at a time.',
    check: (v) => void parseInteger(v, 1, 64)
  },
  {
    flag: 'max-peer-uploads',
    env: 'MAX_PEER_UPLOADS',
    since: 'kadmirror',
    default: '32',
    description:
      'Most blobs this node serves to peers at once; a peer asking for one more is answered 429 and asks another provider. 0: no cap.',
    check: (v) => void parseInteger(v, 0, 100_000)
  },
  {
    flag: 'busy-wait',
    env: 'BUSY_WAIT',
    since: 'kadmirror',
    default: '5s',
    description:
      'When every provider of a blob is at its upload cap (429), how long to keep asking (a new lookup every 250-500 ms) before answering 404.',
    check: duration
  },
  {
    flag: 'flash-crowd',
    env: 'FLASH_CROWD',
    since: 'kadmirror',
    boolean: true,
    default: 'true',
    description:
      'When several nodes miss the same blob at once, elect one to fetch it from upstream and serve its containerd download to the others while it arrives; nodes receiving a blob from a peer relay it while it arrives (needs a readable containerd content directory).'
  },
  {
    flag: 'flash-crowd-wait',
    env: 'FLASH_CROWD_WAIT',
    since: 'kadmirror',
    default: '1500ms',
    description:
      'How long a node that lost the flash-crowd election waits, after the election, for the elected node’s download before answering 404 (the client then pulls from upstream).',
    check: duration
  },
  {
    flag: 'tag-quorum',
    env: 'TAG_QUORUM',
    since: 'kadmirror',
    default: 'auto',
    description:
      'Distinct peer hosts that must serve the same digest before a tag is answered from peers; auto: 1 in a private network (and with --allow-loopback, where every node is one host), else 2. 1 is Spegel’s behaviour: any host that reaches the router port can answer a tag.',
    check: (v) => {
      if (v !== 'auto') void parseInteger(v, 1, 100)
    }
  },
  {
    flag: 'shutdown-grace',
    env: 'SHUTDOWN_GRACE',
    since: 'kadmirror',
    default: '10s',
    description: 'How long in-flight transfers may take to finish after SIGTERM.',
    check: duration
  }
]

/** Options of `cleanup`. */
export const CLEANUP_OPTIONS: readonly OptionSpec[] = [
  {
    flag: 'addr',
    env: 'ADDR',
    required: true,
    description: 'Address to serve /readyz on once the configuration is restored.',
    check: address
  },
  REGISTRY_CONFIG_PATH
]

/** Options of `cleanup-wait`. */
export const CLEANUP_WAIT_OPTIONS: readonly OptionSpec[] = [
  {
    flag: 'probe-endpoint',
    env: 'PROBE_ENDPOINT',
    required: true,
    description: 'host:port of the cleanup pods’ /readyz to probe.'
  },
  {
    flag: 'threshold',
    env: 'THRESHOLD',
    default: '3',
    description: 'Consecutive successful probes that mean the cleanup is done.',
    check: (v) => void parseInteger(v, 1, 1000)
  },
  { flag: 'period', env: 'PERIOD', default: '2s', description: 'Time between probes.', check: duration }
]

/** Options of `generate-psk`. */
export const GENERATE_PSK_OPTIONS: readonly OptionSpec[] = []

/** Options of `version`. */
export const VERSION_OPTIONS: readonly OptionSpec[] = [
  {
    flag: 'format',
    env: 'FORMAT',
    default: 'text',
    description: 'text or json.',
    check: (v) => {
      if (v !== 'text' && v !== 'json')
        throw new InvalidValueError(`${JSON.stringify(v)} is not text or json`)
    }
  }
]

/** Options of `bootstrap-server` (kadmirror's GEP-0043 external bootstrapper). */
export const BOOTSTRAP_SERVER_OPTIONS: readonly OptionSpec[] = [
  {
    flag: 'addr',
    env: 'ADDR',
    default: ':8443',
    description: 'Address to serve /bootstrap-nodes on.',
    check: address
  },
  {
    flag: 'cert-dir',
    env: 'CERT_DIR',
    description:
      'Directory with tls.crt, tls.key (server) and ca.crt (the CA of node client certificates); re-read on rotation.'
  },
  {
    flag: 'insecure',
    env: 'INSECURE',
    boolean: true,
    default: 'false',
    description: 'Serve plain HTTP without client certificates (development only).'
  },
  {
    flag: 'node-ttl',
    env: 'NODE_TTL',
    default: '2m',
    description: 'How long a node stays listed after its last registration.',
    check: duration
  }
]

/** The store `--store` names. @throws {InvalidValueError} */
export function parseStore(
  value: string
): { kind: 'containerd' } | { kind: 'oci-layout'; directory: string } {
  if (value === 'containerd') return { kind: 'containerd' }
  if (value.startsWith('oci-layout:') && value.length > 'oci-layout:'.length)
    return { kind: 'oci-layout', directory: value.slice('oci-layout:'.length) }
  throw new InvalidValueError(`${JSON.stringify(value)} is not a store (containerd, or oci-layout:<dir>)`)
}
