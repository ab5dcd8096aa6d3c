import assert from 'node:assert/strict'
import {
  InvalidAccessRuleError,
  InvalidBootstrapPeerError,
  InvalidCertDirError,
  InvalidFrameError,
  InvalidPeerKeyError,
  NoArbiterError,
  RequestTimeoutError,
  ROUTING_ERROR_CODES,
  RouterClosedError,
  RoutingError,
  SessionClosedError
} from '../src/index.ts'

describe('routing errors', () => {
  const errors = [
    new RouterClosedError(),
    new InvalidBootstrapPeerError('x'),
    new InvalidCertDirError('x'),
    new InvalidPeerKeyError('x'),
    new RequestTimeoutError('x'),
    new SessionClosedError('x'),
    new InvalidFrameError('x'),
    new InvalidAccessRuleError('x'),
    new NoArbiterError()
  ]

  it('gives each error class its own code, every code of the catalogue once', () => {
    assert.deepEqual(errors.map((e) => e.code).sort(), [...ROUTING_ERROR_CODES].sort())
  })

  it('makes every error a RoutingError and an Error with a stable name', () => {
    for (const error of errors) {
      assert.ok(error instanceof RoutingError && error instanceof Error)
      assert.match(error.name, /^[A-Z][A-Za-z]+$/)
    }
    assert.equal(new RequestTimeoutError('x').name, 'TimeoutError')
    assert.equal(new RouterClosedError().message, 'the router is closed')
  })
})
