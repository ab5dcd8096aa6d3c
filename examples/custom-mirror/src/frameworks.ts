/**
 * Mounting the mirror handler in express and fastify. The handler is a plain Node `(req, res)` handler that
 * also takes express's `next`, so each framework needs only a few lines.
 */
import type { MirrorHandler } from '@kadmirror/mirror'
import express, { type Express } from 'express'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'

/**
 * An express app serving the mirror at `/v2/`, `/readyz` and `/livez`; every other path goes on to the app's
 * own routes (here `GET /hello`). The handler is mounted before any body parser: it reads no body.
 */
export function expressApp(handler: MirrorHandler): Express {
  const app = express()
  app.use(handler)
  app.get('/hello', (_req, res) => {
    res.send('hello from express\n')
  })
  return app
}

/**
 * A fastify plugin serving the mirror for every method under `/v2` (so PUT and DELETE get the mirror's own
 * 405 with an OCI error body). The plugin's scope takes any body unparsed, and `reply.hijack()` hands the raw
 * request and response to the handler.
 */
export async function mirrorPlugin(app: FastifyInstance, options: { handler: MirrorHandler }): Promise<void> {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined))
  const serve = (request: FastifyRequest, reply: FastifyReply): void => {
    reply.hijack()
    options.handler(request.raw, reply.raw)
  }
  for (const url of ['/v2', '/v2/', '/v2/*', '/readyz', '/livez']) app.all(url, serve)
}

/** A fastify app with {@link mirrorPlugin} and one route of its own (`GET /hello`). */
export function fastifyApp(handler: MirrorHandler): FastifyInstance {
  const app = Fastify()
  app.register(mirrorPlugin, { handler })
  app.get('/hello', async () => 'hello from fastify\n')
  return app
}
