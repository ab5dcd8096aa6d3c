import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { defaultTagMismatches, longFunctions, readmeErrorCodes } from '@kadmirror/test-support/source-checks'
import * as constants from '../src/constants.ts'
import { ROUTING_ERROR_CODES } from '../src/errors.ts'

const src = fileURLToPath(new URL('../src', import.meta.url))
const readme = fileURLToPath(new URL('../README.md', import.meta.url))

/** Longest function the package may have, in lines: short enough to read at once. */
const MAX_FUNCTION_LINES = 80
/** Longest the composition root may be, in lines: it wires parts, it does not hold them. */
const MAX_ROUTER_LINES = 300

describe('routing package structure', () => {
  it(`has no function longer than ${MAX_FUNCTION_LINES} lines`, async () => {
    assert.deepEqual(await longFunctions(src, MAX_FUNCTION_LINES), [])
  })

  it(`keeps the composition root (libp2p-router.ts) within ${MAX_ROUTER_LINES} lines`, async () => {
    const lines = (await readFile(`${src}/libp2p-router.ts`, 'utf8')).split('\n').length
    assert.ok(lines <= MAX_ROUTER_LINES, `libp2p-router.ts has ${lines} lines`)
  })

  it('documents every default it names with the value of that constant', async () => {
    const { checked, mismatches } = await defaultTagMismatches(src, constants)
    assert.deepEqual(mismatches, [])
    assert.ok(checked >= 10, `only ${checked} @default tags name a constant`)
  })

  it('lists every error code in the README, and no other', async () => {
    assert.deepEqual((await readmeErrorCodes(readme)).sort(), [...ROUTING_ERROR_CODES].sort())
  })
})

describe('source checks', () => {
  it('reads a duration default in ms, s or min, a quoted string and a number', async () => {
    const { documentsValue } = await import('@kadmirror/test-support/source-checks')
    assert.equal(documentsValue('1 s', 1000), true)
    assert.equal(documentsValue('19 min', 1_140_000), true)
    assert.equal(documentsValue('500 ms', 500), true)
    assert.equal(documentsValue("'/spegel/kad/1.0.0'", '/spegel/kad/1.0.0'), true)
    assert.equal(documentsValue('5', 5), true)
    assert.equal(documentsValue('6', 5), false)
    assert.equal(documentsValue('2 s', 1000), false)
  })
})
