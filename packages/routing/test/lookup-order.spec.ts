import assert from 'node:assert/strict'
import { connectedFirst } from '../src/lookup-client.ts'

describe('lookup order', () => {
  it('puts connected providers before records of peers it is not connected to, each group in its order', () => {
    const connected = new Set(['b', 'd'])
    assert.deepEqual(
      connectedFirst(['a', 'b', 'c', 'd'], (p) => connected.has(p)),
      ['b', 'd', 'a', 'c']
    )
  })

  it('keeps the order when every provider is connected, or none is', () => {
    assert.deepEqual(
      connectedFirst(['a', 'b'], () => true),
      ['a', 'b']
    )
    assert.deepEqual(
      connectedFirst(['a', 'b'], () => false),
      ['a', 'b']
    )
  })
})
