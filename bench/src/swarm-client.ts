/**
 * The client side of bench/swarm, run inside one of the benchmark's network namespaces (the nodes' addresses are
 * reachable only from there). Reads JSON requests from stdin, one a line, and answers each with one JSON line:
 *   {"op":"ready","urls":[…]}            → {"ok":true} once every URL's /readyz answers 200 (60 s at most)
 *   {"op":"fetch","url":"…"}             → {"status":200,"bytes":N,"ms":T,"firstByteMs":F}  (the body is counted, not kept)
 *   {"op":"wait","url":"…"}              → {"ok":true} once a HEAD of the URL answers 200 (60 s at most)
 */
import { createInterface } from 'node:readline'
import { Agent, request } from 'undici'

const agent = new Agent({ connections: 16, bodyTimeout: 120_000, headersTimeout: 120_000 })

async function ready(urls: string[]): Promise<unknown> {
  const deadline = Date.now() + 60_000
  for (const url of urls)
    for (;;) {
      const status = await request(`${url}/readyz`, { dispatcher: agent }).then(
        async (r) => {
          await r.body.dump()
          return r.statusCode
        },
        () => 0
      )
      if (status === 200) break
      if (Date.now() > deadline) return { ok: false, url }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
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

async function waitFound(url: string): Promise<unknown> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const status = await request(url, { method: 'HEAD', dispatcher: agent }).then(
      async (r) => {
        await r.body.dump()
        return r.statusCode
      },
      () => 0
    )
    if (status === 200) return { ok: true }
    if (Date.now() > deadline) return { ok: false, status }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  const message = JSON.parse(line) as { op: string; urls?: string[]; url?: string }
  const answer =
    message.op === 'ready'
      ? await ready(message.urls ?? [])
      : message.op === 'wait'
        ? await waitFound(message.url as string)
        : await fetchCounted(message.url as string).catch((err: unknown) => ({ error: String(err) }))
  process.stdout.write(`${JSON.stringify(answer)}\n`)
}
await agent.close()
