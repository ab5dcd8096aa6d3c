/**
 * The debug page's "measure": resolves an image through the DHT (how long each provider took to be found) and
 * pulls it through the node's own mirror as containerd would (HEAD the tag, GET the manifests, GET every blob),
 * with the duration and source of each request and the totals.
 */
import type { MirrorHandler, ResponseEvent } from '@kadmirror/mirror'
import { type Descriptor, parseReference, tagKey, walkImage } from '@kadmirror/oci'
import type { Libp2pRouter } from '@kadmirror/routing'
import { MEASURE_LOOKUP_PROVIDERS } from './constants.ts'

/** One provider found while resolving. */
export interface MeasuredProvider {
  id: string
  registryUrl: string
  /** From the start of the lookup, in ms. */
  ms: number
}

/** One request of the pull. */
export interface MeasuredRequest {
  method: string
  path: string
  status: number
  /** Where the mirror got it: local, peer, miss… */
  source: ResponseEvent['source'] | 'unknown'
  peer?: string
  bytes: number
  ms: number
}

/** A measurement. */
export interface Measurement {
  image: string
  resolve: { key: string; ms: number; providers: MeasuredProvider[] }
  pull: {
    requests: MeasuredRequest[]
    ms: number
    bytes: number
    fromPeers: number
    status: 'ok' | 'incomplete'
  }
}

/** A measure request that names no valid image (the page shows the message). */
export class InvalidMeasureError extends Error {
  override name = 'InvalidMeasureError'
  readonly code = 'ERR_INVALID_MEASURE'
}

async function resolveProviders(router: Libp2pRouter, key: string): Promise<Measurement['resolve']> {
  const started = performance.now()
  const providers: MeasuredProvider[] = []
  for await (const provider of router.lookup(key, { count: MEASURE_LOOKUP_PROVIDERS }))
    providers.push({ id: provider.id, registryUrl: provider.registryUrl, ms: performance.now() - started })
  return { key, ms: performance.now() - started, providers }
}

/** Sends one request to the mirror and records it with the mirror's own account of where it came from. */
function recorder(registryUrl: string, mirror: MirrorHandler, requests: MeasuredRequest[]) {
  const events: ResponseEvent[] = []
  const listener = (event: ResponseEvent): void => {
    events.push(event)
  }
  mirror.events.on('response', listener)
  const send = async (method: 'GET' | 'HEAD', path: string, query: string): Promise<Response> => {
    const started = performance.now()
    const res = await fetch(`${registryUrl}${path}${query}`, { method, signal: AbortSignal.timeout(60_000) })
    const body = method === 'HEAD' ? new ArrayBuffer(0) : await res.clone().arrayBuffer()
    const ms = performance.now() - started
    await new Promise((resolve) => setImmediate(resolve))
    const event = events.find((e) => e.path === path && e.method === method)
    requests.push({
      ...{ method, path, status: res.status, source: event?.source ?? 'unknown', bytes: body.byteLength, ms },
      ...(event?.peer === undefined ? {} : { peer: event.peer })
    })
    return res
  }
  return { send, stop: () => mirror.events.off('response', listener) }
}

/** Pulls `image` through the mirror at `registryUrl`, as containerd would. */
async function pullThrough(
  registryUrl: string,
  mirror: MirrorHandler,
  image: ReturnType<typeof parseReference>
) {
  const requests: MeasuredRequest[] = []
  const started = performance.now()
  const query = `?ns=${encodeURIComponent(image.registry)}`
  const { send, stop } = recorder(registryUrl, mirror, requests)
  let complete = true
  try {
    const head = await send('HEAD', `/v2/${image.repository}/manifests/${image.digest ?? image.tag}`, query)
    const digest = head.headers.get('docker-content-digest')
    const mediaType = head.headers.get('content-type') ?? ''
    if (head.status !== 200 || digest === null)
      return { requests, ms: performance.now() - started, complete: false }
    const load = async (descriptor: Descriptor): Promise<Uint8Array | undefined> => {
      const res = await send('GET', `/v2/${image.repository}/manifests/${descriptor.digest}`, query)
      if (res.status !== 200) complete = false
      return res.status === 200 ? new Uint8Array(await res.arrayBuffer()) : undefined
    }
    const root = { digest, mediaType, size: Number(head.headers.get('content-length') ?? 0) } as Descriptor
    for await (const entry of walkImage(root, load)) {
      if (['root', 'manifest', 'subject'].includes(entry.relation) || entry.missing === true) continue
      const res = await send('GET', `/v2/${image.repository}/blobs/${entry.descriptor.digest}`, query)
      if (res.status !== 200) complete = false
    }
  } finally {
    stop()
  }
  return { requests, ms: performance.now() - started, complete }
}

/**
 * Measures `image` (`registry/repository:tag` or `@digest`) on this node.
 * @throws {InvalidMeasureError} when `image` is not a reference.
 */
export async function measure(
  image: string,
  parts: { router: Libp2pRouter; mirror: MirrorHandler; registryUrl: string }
): Promise<Measurement> {
  let reference: ReturnType<typeof parseReference>
  try {
    reference = parseReference(image)
  } catch (err) {
    throw new InvalidMeasureError((err as Error).message)
  }
  const key = reference.digest ?? tagKey(reference) ?? image
  const resolve = await resolveProviders(parts.router, key)
  const pulled = await pullThrough(parts.registryUrl, parts.mirror, reference)
  const bytes = pulled.requests.reduce((sum, r) => sum + r.bytes, 0)
  const fromPeers = pulled.requests.filter((r) => r.source === 'peer').length
  return {
    image,
    resolve,
    pull: {
      requests: pulled.requests,
      ms: pulled.ms,
      bytes,
      fromPeers,
      status: pulled.complete ? 'ok' : 'incomplete'
    }
  }
}
