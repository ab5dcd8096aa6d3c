/**
 * Writing answers: OCI error bodies, common headers, and writes that respect backpressure.
 */
import type { ServerResponse } from 'node:http'
import { type OciErrorCode, ociErrorBody } from '@kadmirror/oci'
import { CLIENT_STALL_TIMEOUT_MS } from './constants.ts'

/** Sent on every answer of the distribution API. */
export const API_VERSION_HEADER = ['docker-distribution-api-version', 'registry/2.0'] as const

/** Answers with an OCI error body. Does nothing when headers were already sent (the caller destroys instead). */
export function sendError(
  res: ServerResponse,
  status: number,
  code: OciErrorCode,
  message?: string,
  headers: Record<string, string> = {}
): void {
  if (res.headersSent || res.destroyed) return
  const body = JSON.stringify(ociErrorBody(code, message))
  res.writeHead(status, {
    ...headers,
    [API_VERSION_HEADER[0]]: API_VERSION_HEADER[1],
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body)
  })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}

/**
 * Waits until a response whose `write` returned false can take more bytes.
 * Resolves false when the client went away instead (nothing more should be written), or read nothing for
 * `stallTimeoutMs` (then the connection is closed: a client that stops reading must not pin the transfer's buffers).
 */
export function drained(res: ServerResponse, stallTimeoutMs = CLIENT_STALL_TIMEOUT_MS): Promise<boolean> {
  if (res.destroyed || res.writableEnded) return Promise.resolve(false)
  return new Promise((resolve) => {
    const timer = setTimeout(() => res.destroy(), stallTimeoutMs)
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      res.off('drain', onDrain)
      res.off('close', onClose)
      resolve(ok && !res.destroyed)
    }
    const onDrain = (): void => done(true)
    const onClose = (): void => done(false)
    res.on('drain', onDrain)
    res.on('close', onClose)
  })
}
