import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { runReadmeExample } from '@kadmirror/test-support'
import { readmeTables, tableCells, tableIn } from '../src/options-doc.ts'

const packageDir = fileURLToPath(new URL('..', import.meta.url))

describe('daemon README', function () {
  this.timeout(60_000)

  it('runs its example as written: a node on loopback answers a miss 404 and serves metrics', async () => {
    assert.equal(await runReadmeExample(packageDir), '404\ntrue\n')
  })

  for (const [name, table] of readmeTables()) {
    it(`lists the ${name} options as they are defined (node src/options-doc.ts rewrites the table)`, async () => {
      const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
      const written = tableIn(readme, name)
      assert.ok(written !== undefined, `the README has no <!-- options:${name} --> table`)
      assert.deepEqual(tableCells(written), tableCells(table))
    })
  }
})
