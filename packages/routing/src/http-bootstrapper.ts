/**
 * The node side of HTTP(S) bootstrapping, as in Gardener's GEP-0043: the daemon may run as a systemd unit before
 * kubelet, so cluster DNS is not there yet and nodes find each other through an external bootstrapper. `GET <url>`
 * returns live nodes as a JSON AddrInfo array — the shape Spegel's `/id` serves, so either side can use the
 * other's — and, for our server, `POST <url>` registers the node. Mutual TLS with a CA and a client certificate
 * from a cert dir (`ca.crt`, `tls.crt`, `tls.key`, as Spegel's `--http-bootstrap-cert-dir`); the files are re-read
 * when they change.
 */
import { type Logger, pino } from 'pino'
import { Agent, request } from 'undici'
import {
  type BootstrapOptions,
  type BootstrapPeer,
  type Bootstrapper,
  parseAddrInfos,
  toAddrInfo
} from './bootstrap.ts'
import { readCertDir } from './cert-dir.ts'
import {
  DEFAULT_ROUTER_PORT,
  HTTP_BOOTSTRAP_MAX_BODY_BYTES,
  HTTP_BOOTSTRAP_MAX_ENTRIES,
  HTTP_BOOTSTRAP_TIMEOUT_MS
} from './constants.ts'
import { InvalidBootstrapPeerError } from './errors.ts'

/** Reads a response body as text, refusing more than `limit` bytes. */
async function readBody(body: AsyncIterable<Uint8Array>, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > limit) throw new InvalidBootstrapPeerError(`bootstrap answer is larger than ${limit} bytes`)
    chunks.push(Buffer.from(chunk))
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Options of {@link httpBootstrapper}. */
export interface HttpBootstrapperInit {
  /** The list URL: `https://bootstrap.example:8443/bootstrap-nodes` (our server) or `http://node:5001/id` (Spegel). */
  url: string
  /** Directory with `ca.crt` (server CA) and `tls.crt` + `tls.key` (client certificate). Re-read when the files change. */
  certDir?: string
  /** Most entries used from an answer (as Spegel's client). @default {@link HTTP_BOOTSTRAP_MAX_ENTRIES} (3) */
  limit?: number
  /** Router port added to addresses that name only an IP. @default {@link DEFAULT_ROUTER_PORT} (5001) */
  routerPort?: number
  /** Register this node with `POST <url>`; default true for URLs ending in `/bootstrap-nodes`. */
  register?: boolean
  /** Longest time one request may take, in ms. @default {@link HTTP_BOOTSTRAP_TIMEOUT_MS} (5 s) */
  timeoutMs?: number
  logger?: Logger
}

/** An undici agent for the cert dir's current files: a new one (the old closed) whenever they change. */
class CertDirAgent {
  private agent: Agent | undefined
  private version: string | undefined
  private readonly certDir: string | undefined
  private readonly timeoutMs: number
  private readonly log: Logger

  constructor(certDir: string | undefined, timeoutMs: number, log: Logger) {
    this.certDir = certDir
    this.timeoutMs = timeoutMs
    this.log = log
  }

  async current(): Promise<Agent> {
    const material = this.certDir === undefined ? { version: 'none' } : await readCertDir(this.certDir)
    if (this.agent !== undefined && material.version === this.version) return this.agent
    const previous = this.agent
    const tls = {
      ...('ca' in material && material.ca !== undefined ? { ca: material.ca } : {}),
      ...('cert' in material && material.cert !== undefined ? { cert: material.cert, key: material.key } : {})
    }
    const timeoutMs = this.timeoutMs
    this.agent = new Agent({
      connect: { ...tls, timeout: timeoutMs },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs
    })
    if (previous !== undefined)
      this.log.info({ certDir: this.certDir }, 'bootstrap certificates changed; using the new ones')
    this.version = material.version
    previous?.close().catch(() => {})
    return this.agent
  }

  async close(): Promise<void> {
    await this.agent?.close().catch(() => {})
    this.agent = undefined
  }
}

/** The bootstrapper behind {@link httpBootstrapper}. */
class HttpBootstrapper implements Bootstrapper {
  private readonly url: URL
  private readonly init: HttpBootstrapperInit
  private readonly log: Logger
  private readonly timeoutMs: number
  private readonly shouldRegister: boolean
  private readonly agent: CertDirAgent
  private registrationRefused = false

  constructor(init: HttpBootstrapperInit) {
    this.url = new URL(init.url)
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:')
      throw new TypeError(`bootstrap URL ${init.url} is not http(s)`)
    this.init = init
    this.log = init.logger ?? pino({ level: 'silent' })
    this.timeoutMs = init.timeoutMs ?? HTTP_BOOTSTRAP_TIMEOUT_MS
    this.shouldRegister = init.register ?? this.url.pathname.endsWith('/bootstrap-nodes')
    this.agent = new CertDirAgent(init.certDir, this.timeoutMs, this.log)
  }

  private async call(method: 'GET' | 'POST' | 'DELETE', target: URL, signal?: AbortSignal, body?: string) {
    const timeout = AbortSignal.timeout(this.timeoutMs)
    const response = await request(target, {
      method,
      dispatcher: await this.agent.current(),
      signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
      ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } })
    })
    const text = await readBody(response.body, HTTP_BOOTSTRAP_MAX_BODY_BYTES)
    return { status: response.statusCode, text }
  }

  async peers(options: BootstrapOptions = {}): Promise<BootstrapPeer[]> {
    const { status, text } = await this.call('GET', this.url, options.signal)
    if (status !== 200)
      throw new InvalidBootstrapPeerError(`bootstrap server answered ${status} to GET ${this.url.href}`)
    return parseAddrInfos(text, {
      limit: this.init.limit ?? HTTP_BOOTSTRAP_MAX_ENTRIES,
      port: this.init.routerPort ?? DEFAULT_ROUTER_PORT
    })
  }

  async register(self: BootstrapPeer, options: BootstrapOptions = {}): Promise<void> {
    if (!this.shouldRegister || this.registrationRefused) return
    const { status } = await this.call('POST', this.url, options.signal, JSON.stringify(toAddrInfo(self)))
    if (status === 404 || status === 405) {
      this.registrationRefused = true
      this.log.info(
        { url: this.url.href, status },
        'bootstrap server does not take registrations; only reading its list'
      )
      return
    }
    if (status < 200 || status >= 300)
      throw new InvalidBootstrapPeerError(`bootstrap server answered ${status} to a registration`)
  }

  async unregister(self: BootstrapPeer, options: BootstrapOptions = {}): Promise<void> {
    if (!this.shouldRegister || this.registrationRefused || self.id === undefined) return
    const target = new URL(this.url)
    target.pathname = `${this.url.pathname.replace(/\/+$/, '')}/${encodeURIComponent(self.id)}`
    await this.call('DELETE', target, options.signal)
  }

  close(): Promise<void> {
    return this.agent.close()
  }
}

/**
 * The node side of HTTP(S) bootstrapping.
 * @throws {TypeError} at creation for a URL that is not http(s).
 */
export function httpBootstrapper(init: HttpBootstrapperInit): Bootstrapper {
  return new HttpBootstrapper(init)
}
