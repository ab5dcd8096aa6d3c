/**
 * The client side of bench/swarm, run inside one of the benchmark's network namespaces (the nodes' addresses are
 * reachable only from there). Reads JSON requests from stdin, one a line, each with an `id`, and answers each with
 * one JSON line carrying the same `id` (requests run concurrently):
 *   {"op":"ready","urls":[…]}    → {"ok":true} once every URL's /readyz answers 200 (60 s at most)
 *   {"op":"wait","url":"…"}      → {"ok":true} once a HEAD of the URL answers 200 (60 s at most)
 *   {"op":"fetch","url":"…"}     → {"status":200,"bytes":N,"ms":T,"firstByteMs":F}  (the body is counted, not kept)
 *   {"op":"pull",…}              → {"ms":T,"notFound":K}: every layer through the node's mirror into its OCI layout,
 *                                  then the config and manifest, then the tag — as containerd commits a pull, so the
 *                                  node then advertises it (each layer as it lands: containerd ≥ 2.1 advertises per
 *                                  blob); a 404 is asked again a second later (there is no upstream)
 *   {"op":"peaks","urls":[…]}    → {"peaks":{url:n}}: each node's kadmirror_peer_uploads_peak (the most uploads it
 *                                  served at once since it started), read once from its /metrics
 */
import { get, Agent as HttpAgent, type IncomingMessage } from 'node:http'
import { createInterface } from 'node:readline'
import { type Digest, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST } from '@kadmirror/oci'
import { type OciLayoutStore, openOciLayoutStore } from '@kadmirror/store'
import { Agent, request } from 'undici'

const agent = new Agent({ connections: 64, bodyTimeout: 300_000, headersTimeout: 300_000 })
const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 })

/** The status of a request whose body is dropped (0 when it failed). */
async function statusOf(url: string, method: 'GET' | 'HEAD' = 'GET'): Promise<number> {
  return request(url, { method, dispatcher: agent }).then(
    async (r) => {
      await r.body.dump()
      return r.statusCode
    },
    () => 0
  )
}

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return true
}

async function ready(urls: string[]): Promise<unknown> {
  for (const url of urls)
    if (!(await until(async () => (await statusOf(`${url}/readyz`)) === 200, 60_000)))
      return { ok: false, url }
  return { ok: true }
}

async function fetchCounted(url: string): Promise<unknown> {
  const started = performance.now()
  const response = await request(url, { dispatcher: agent })
  let bytes = 0
  let firstByteMs: number | undefined
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    firstByteMs ??= performance.now() - started
    bytes += chunk.byteLength
  }
  return {
    status: response.statusCode,
    bytes,
    ms: performance.now() - started,
    firstByteMs: firstByteMs ?? 0
  }
}

interface PullRequest {
  mirror: string
  layout: string
  reference: string
  repository: string
  layers: { digest: Digest; size: number }[]
  config: string
  manifest: string
}

/**
 * Makes a layer visible to the node as soon as it landed, as containerd (≥ 2.1, with content events) makes its node
 * advertise each blob on commit: an image of that one layer, tagged `<reference>-<layer digest prefix>`.
 */
async function commitLayer(
  store: OciLayoutStore,
  message: PullRequest,
  layer: { digest: Digest; size: number }
) {
  const config = await store.putBlob(Buffer.from(message.config, 'base64'))
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...config },
      layers: [{ mediaType: OCI_LAYER_TAR, ...layer }]
    })
  )
  const root = await store.putBlob(manifest)
  await store.tagImage(`${message.reference}-${layer.digest.slice(7, 19)}`, {
    mediaType: OCI_MANIFEST,
    ...root
  })
}

/** A blob GET through node:http (its body is a stream putBlob reads, as containerd writes what it receives). */
function blobGet(url: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: httpAgent }, resolve)
    req.on('error', reject)
  })
}

async function pull(message: PullRequest): Promise<unknown> {
  const started = performance.now()
  const store = await openOciLayoutStore({ directory: message.layout })
  let notFound = 0
  try {
    await Promise.all(
      message.layers.map(async (layer) => {
        for (;;) {
          const url = `${message.mirror}/v2/${message.repository}/blobs/${layer.digest}?ns=registry.example.com`
          const response = await blobGet(url)
          if (response.statusCode === 200) {
            await store.putBlob(response, layer)
            return commitLayer(store, message, layer)
          }
          response.resume()
          if (response.statusCode !== 404) throw new Error(`${url}: ${response.statusCode}`)
          notFound++
          await new Promise((resolve) => setTimeout(resolve, 1000))
        }
      })
    )
    await store.putBlob(Buffer.from(message.config, 'base64'))
    const manifest = await store.putBlob(Buffer.from(message.manifest, 'base64'))
    await store.tagImage(message.reference, { mediaType: OCI_MANIFEST, ...manifest })
    return { ms: performance.now() - started, notFound }
  } finally {
    await store.close()
  }
}

async function peaks(urls: string[]): Promise<unknown> {
  const entries = await Promise.all(
    urls.map(async (url) => {
      const text = await request(`${url}/metrics`, { dispatcher: agent }).then((r) => r.body.text())
      const value = /^kadmirror_peer_uploads_peak (\d+)/m.exec(text)?.[1]
      if (value === undefined) throw new Error(`${url}/metrics has no kadmirror_peer_uploads_peak`)
      return [url, Number(value)] as const
    })
  )
  return { peaks: Object.fromEntries(entries) }
}

async function answer(message: Record<string, unknown>): Promise<unknown> {
  switch (message.op) {
    case 'ready':
      return ready(message.urls as string[])
    case 'wait':
      return { ok: await until(async () => (await statusOf(message.url as string, 'HEAD')) === 200, 60_000) }
    case 'fetch':
      return fetchCounted(message.url as string)
    case 'pull':
      return pull(message as unknown as PullRequest)
    case 'peaks':
      return peaks(message.urls as string[])
  }
  return { error: `unknown op ${String(message.op)}` }
}

for await (const line of createInterface({ input: process.stdin })) {
  const message = JSON.parse(line) as Record<string, unknown>
  void answer(message)
    .catch((err: unknown) => ({ error: String(err) }))
    .then((value) => process.stdout.write(`${JSON.stringify({ id: message.id, ...(value as object) })}\n`))
}
await agent.close()
httpAgent.destroy()
