/**
 * An HTTP battery for a pull-through mirror, run black-box against any mirror (kadmirror and Spegel alike) with curl
 * from inside a node's namespace. Each case is one request and one rule taken from the OCI distribution spec or HTTP
 * (RFC 9110): content served byte-exact with the right headers, ranges answered as RFC 9110 says, misses as fast
 * 404s with an OCI error body, bad input refused with a 4xx (never a 5xx, never a hang), writes refused. Where the
 * spec allows more than one answer (a malformed Range may be ignored or refused), the case accepts each.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { NetworkNode } from '@kadmirror/test-support/netns'
import { curlRequest } from './cluster.ts'

/** What the battery asks for: content the cluster holds, by the names containerd would use. */
export interface BatteryTarget {
  /** The mirror's base URL as seen from the node, e.g. `http://127.0.0.1:5000`. */
  base: string
  /** The upstream registry (`?ns=`). */
  registry: string
  repository: string
  tag: string
  manifest: { digest: string; mediaType: string }
  /** A blob of at least 4 KiB and its bytes. */
  blob: { digest: string; bytes: Buffer }
}

/** One answer: status, headers (names lower-cased), body bytes, seconds taken. */
export interface BatteryAnswer {
  status: number
  headers: Map<string, string>
  body: Buffer
  seconds: number
}

interface BatteryRequest {
  method: string
  path: string
  headers?: Record<string, string>
}

/** One case: a request and a rule; `check` returns why the answer breaks the rule, or undefined. */
export interface BatteryCase {
  name: string
  request: BatteryRequest
  check: (answer: BatteryAnswer) => string | undefined
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  '*/*'
].join(', ')

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** Every rule passes: the first rule that fails names the answer's status and why. */
function all(...rules: ((a: BatteryAnswer) => string | undefined)[]) {
  return (answer: BatteryAnswer): string | undefined => {
    for (const rule of rules) {
      const why = rule(answer)
      if (why !== undefined) return why
    }
    return undefined
  }
}

const status =
  (...allowed: number[]) =>
  (a: BatteryAnswer): string | undefined =>
    allowed.includes(a.status) ? undefined : `answered ${a.status}, expected ${allowed.join(' or ')}`

const header =
  (name: string, expected: string | RegExp) =>
  (a: BatteryAnswer): string | undefined => {
    const value = a.headers.get(name)
    const ok = typeof expected === 'string' ? value === expected : value !== undefined && expected.test(value)
    return ok ? undefined : `${name}: ${value ?? '(none)'}, expected ${String(expected)}`
  }

const body =
  (expected: Buffer) =>
  (a: BatteryAnswer): string | undefined =>
    a.body.equals(expected)
      ? undefined
      : `body of ${a.body.length} bytes differs from the expected ${expected.length}`

/** The body is an OCI error body whose first code is one of `codes`. */
const ociError =
  (...codes: string[]) =>
  (a: BatteryAnswer): string | undefined => {
    try {
      const parsed = JSON.parse(a.body.toString('utf8')) as { errors?: { code?: string }[] }
      const code = parsed.errors?.[0]?.code
      return code !== undefined && codes.includes(code)
        ? undefined
        : `error code ${code ?? '(none)'}, expected ${codes.join(' or ')}`
    } catch {
      return `the body is not an OCI error body: ${JSON.stringify(a.body.toString('utf8').slice(0, 80))}`
    }
  }

/** Bad input: a 4xx (the client's mistake), never a 2xx, a 5xx or a slow answer. */
const refused = (a: BatteryAnswer): string | undefined =>
  a.status >= 400 && a.status < 500 ? undefined : `answered ${a.status}, expected a 4xx`

const fast = (a: BatteryAnswer): string | undefined =>
  a.seconds < 1 ? undefined : `took ${a.seconds.toFixed(2)} s (a slow miss is paid by every blob of a pull)`

/** The battery's cases for `t`. */
export function batteryCases(t: BatteryTarget): BatteryCase[] {
  const ns = `?ns=${t.registry}`
  const blobPath = `/v2/${t.repository}/blobs/${t.blob.digest}${ns}`
  const manifestPath = `/v2/${t.repository}/manifests/${t.manifest.digest}${ns}`
  const tagPath = `/v2/${t.repository}/manifests/${t.tag}${ns}`
  const unknown = `sha256:${randomBytes(32).toString('hex')}`
  const bytes = t.blob.bytes
  const size = bytes.length
  const get = (path: string, headers?: Record<string, string>): BatteryRequest => ({
    method: 'GET',
    path,
    ...(headers === undefined ? {} : { headers })
  })
  const head = (path: string, headers?: Record<string, string>): BatteryRequest => ({
    ...get(path, headers),
    method: 'HEAD'
  })
  const ranged = (range: string) => get(blobPath, { Range: range })
  const accept = { Accept: MANIFEST_ACCEPT }
  return [
    { name: 'GET /v2/ answers 200', request: get('/v2/'), check: status(200) },
    {
      name: 'GET /v2/ names the API version (Docker-Distribution-API-Version: registry/2.0)',
      request: get('/v2/'),
      check: header('docker-distribution-api-version', 'registry/2.0')
    },
    { name: 'HEAD /v2/ answers 200', request: head('/v2/'), check: status(200) },
    { name: 'GET of a blob answers 200', request: get(blobPath), check: status(200) },
    {
      name: 'GET of a blob sends its exact bytes',
      request: get(blobPath),
      check: all(status(200), body(bytes))
    },
    {
      name: 'GET of a blob sends Content-Length: its size',
      request: get(blobPath),
      check: header('content-length', String(size))
    },
    {
      name: 'GET of a blob sends Docker-Content-Digest: its digest',
      request: get(blobPath),
      check: header('docker-content-digest', t.blob.digest)
    },
    {
      name: 'HEAD of a blob answers 200 with its size as Content-Length',
      request: head(blobPath),
      check: all(status(200), header('content-length', String(size)))
    },
    {
      name: 'HEAD of a blob sends Docker-Content-Digest',
      request: head(blobPath),
      check: header('docker-content-digest', t.blob.digest)
    },
    {
      name: 'a closed Range (bytes=0-1023) answers 206 with those bytes',
      request: ranged('bytes=0-1023'),
      check: all(status(206), body(bytes.subarray(0, 1024)))
    },
    {
      name: 'a closed Range answers Content-Range: bytes 0-1023/<size>',
      request: ranged('bytes=0-1023'),
      check: all(status(206), header('content-range', `bytes 0-1023/${size}`))
    },
    {
      name: 'a Range in the middle (bytes=1000-2999) answers 206 with those bytes and Content-Length 2000',
      request: ranged('bytes=1000-2999'),
      check: all(status(206), body(bytes.subarray(1000, 3000)), header('content-length', '2000'))
    },
    {
      name: 'an open Range (bytes=1024-) answers 206 with the rest, as containerd resumes',
      request: ranged('bytes=1024-'),
      check: all(
        status(206),
        body(bytes.subarray(1024)),
        header('content-range', `bytes 1024-${size - 1}/${size}`)
      )
    },
    {
      name: 'a suffix Range (bytes=-1024) answers 206 with the last 1024 bytes',
      request: ranged('bytes=-1024'),
      check: all(status(206), body(bytes.subarray(size - 1024)))
    },
    {
      name: 'a Range ending past the end is cut at the last byte (206)',
      request: ranged(`bytes=${size - 10}-${size + 1000}`),
      check: all(
        status(206),
        body(bytes.subarray(size - 10)),
        header('content-range', `bytes ${size - 10}-${size - 1}/${size}`)
      )
    },
    {
      name: 'a Range of the whole blob answers its bytes (206 or 200)',
      request: ranged(`bytes=0-${size - 1}`),
      check: all(status(200, 206), body(bytes))
    },
    {
      name: 'a Range starting at the size answers 416 (RFC 9110: unsatisfiable)',
      request: ranged(`bytes=${size}-`),
      check: status(416)
    },
    {
      name: 'a 416 names the size (Content-Range: bytes */<size>)',
      request: ranged(`bytes=${size + 100}-${size + 200}`),
      check: all(status(416), header('content-range', `bytes */${size}`))
    },
    {
      name: 'a malformed Range (bytes=abc) is ignored (200, the whole blob) or refused (416), not a miss',
      request: ranged('bytes=abc'),
      check: (a) => (a.status === 416 ? undefined : all(status(200), body(bytes))(a))
    },
    {
      name: 'several ranges (bytes=0-1,4-5) are answered whole (200) or refused (416), not a miss',
      request: ranged('bytes=0-1,4-5'),
      check: (a) => (a.status === 416 ? undefined : all(status(200), body(bytes))(a))
    },
    {
      name: 'a Range in another unit (items=0-1) is ignored: 200 with the whole blob',
      request: ranged('items=0-1'),
      check: (a) => (a.status === 416 ? undefined : all(status(200), body(bytes))(a))
    },
    {
      name: 'GET of a manifest by digest answers 200',
      request: get(manifestPath, accept),
      check: status(200)
    },
    {
      name: 'GET of a manifest by digest sends bytes that hash to that digest',
      request: get(manifestPath, accept),
      check: all(status(200), (a) =>
        sha256(a.body) === t.manifest.digest ? undefined : `hashes to ${sha256(a.body)}`
      )
    },
    {
      name: 'GET of a manifest sends its media type as Content-Type',
      request: get(manifestPath, accept),
      check: header('content-type', t.manifest.mediaType)
    },
    {
      name: 'GET of a manifest sends Docker-Content-Digest',
      request: get(manifestPath, accept),
      check: header('docker-content-digest', t.manifest.digest)
    },
    {
      name: 'HEAD of a manifest by digest answers 200 with its digest',
      request: head(manifestPath, accept),
      check: all(status(200), header('docker-content-digest', t.manifest.digest))
    },
    {
      name: 'HEAD of a manifest by tag (with ?ns=) answers the digest the tag points at',
      request: head(tagPath, accept),
      check: all(status(200), header('docker-content-digest', t.manifest.digest))
    },
    {
      name: 'GET of a manifest by tag sends the manifest',
      request: get(tagPath, accept),
      check: all(status(200), (a) => (sha256(a.body) === t.manifest.digest ? undefined : 'another manifest'))
    },
    {
      name: 'a blob nobody holds answers 404 BLOB_UNKNOWN (OCI error body)',
      request: get(`/v2/${t.repository}/blobs/${unknown}${ns}`),
      check: all(status(404), ociError('BLOB_UNKNOWN'))
    },
    {
      name: 'a blob nobody holds answers within a second',
      request: get(`/v2/${t.repository}/blobs/${unknown}${ns}`),
      check: all(status(404), fast)
    },
    {
      name: 'HEAD of a blob nobody holds answers 404 within a second',
      request: head(`/v2/${t.repository}/blobs/${unknown}${ns}`),
      check: all(status(404), fast)
    },
    {
      name: 'a manifest nobody holds answers 404 MANIFEST_UNKNOWN',
      request: get(`/v2/${t.repository}/manifests/${unknown}${ns}`, accept),
      check: all(status(404), ociError('MANIFEST_UNKNOWN'))
    },
    {
      name: 'a tag nobody holds answers 404 MANIFEST_UNKNOWN within a second',
      request: get(`/v2/${t.repository}/manifests/no-such-tag${ns}`, accept),
      check: all(status(404), ociError('MANIFEST_UNKNOWN'), fast)
    },
    {
      name: 'a digest with bad hex (sha256:zz…) is refused with a 4xx',
      request: get(`/v2/${t.repository}/blobs/sha256:${'z'.repeat(64)}${ns}`),
      check: refused
    },
    {
      name: 'a digest of the wrong length is refused with a 4xx',
      request: get(`/v2/${t.repository}/blobs/sha256:abc${ns}`),
      check: refused
    },
    {
      name: 'a digest without an algorithm is refused with a 4xx',
      request: get(`/v2/${t.repository}/blobs/${t.blob.digest.slice(7)}${ns}`),
      check: refused
    },
    {
      name: 'a repository name in capitals is refused with a 4xx (names are lower case)',
      request: get(`/v2/${t.repository.toUpperCase()}/blobs/${t.blob.digest}${ns}`),
      check: refused
    },
    {
      name: 'a path with ../ is refused with a 4xx',
      request: get(`/v2/../../etc/passwd/blobs/${t.blob.digest}${ns}`),
      check: refused
    },
    {
      name: 'a repository name of 300 characters is refused with a 4xx',
      request: get(`/v2/${'a'.repeat(300)}/blobs/${t.blob.digest}${ns}`),
      check: refused
    },
    {
      name: 'the catalogue (not served by a mirror) answers 404',
      request: get('/v2/_catalog'),
      check: status(404)
    },
    {
      name: 'PUT of a manifest is refused with 405 (a mirror is read-only)',
      request: { method: 'PUT', path: `/v2/${t.repository}/manifests/${t.tag}${ns}` },
      check: status(405)
    },
    {
      name: 'DELETE of a blob is refused with 405',
      request: { method: 'DELETE', path: blobPath },
      check: status(405)
    },
    {
      name: 'POST of a blob upload is refused with 405',
      request: { method: 'POST', path: `/v2/${t.repository}/blobs/uploads/${ns}` },
      check: status(405)
    },
    {
      name: 'a refused write carries an OCI error body (UNSUPPORTED)',
      request: { method: 'PATCH', path: `/v2/${t.repository}/blobs/uploads/x${ns}` },
      check: all(status(405), ociError('UNSUPPORTED'))
    }
  ]
}

/** Sends `request` to `base` from inside `node`'s namespace. */
async function send(node: NetworkNode, base: string, request: BatteryRequest): Promise<BatteryAnswer> {
  const answer = await curlRequest(node, `${base}${request.path}`, request.method, request.headers)
  const headers = new Map<string, string>()
  for (const line of answer.headers.split(/\r?\n/).slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return { ...answer, headers }
}

/** GETs `url` from inside `node`'s namespace: status, headers and body bytes (for the battery's expected content). */
export function fetchFrom(
  node: NetworkNode,
  url: string,
  headers: Record<string, string> = {}
): Promise<BatteryAnswer> {
  return send(node, '', { method: 'GET', path: url, headers })
}

/** The `Accept` header containerd sends for manifests. */
export const MANIFEST_ACCEPT_HEADER = { Accept: MANIFEST_ACCEPT }

/** Runs every case against the mirror at `t.base`, from `node`; resolves the cases that failed and why. */
export async function runBattery(
  node: NetworkNode,
  t: BatteryTarget
): Promise<{ total: number; failed: { name: string; why: string }[] }> {
  const cases = batteryCases(t)
  const failed: { name: string; why: string }[] = []
  for (const c of cases) {
    const answer = await send(node, t.base, c.request)
    const why = answer.status === 0 ? 'no answer (connection failed or timed out)' : c.check(answer)
    if (why !== undefined) failed.push({ name: c.name, why })
  }
  return { total: cases.length, failed }
}
