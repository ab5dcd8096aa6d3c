// The packages' dependency direction, as the README states it: daemon → mirror → routing → store → oci, and
// containerd → store → oci beside routing. Checked against what each package's sources import and what its
// package.json lists, so the README line cannot drift from the code.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const packages = fileURLToPath(new URL('../packages', import.meta.url))

/** What each package may import of the others. */
const ALLOWED: Record<string, string[]> = {
  oci: [],
  store: ['oci'],
  routing: ['store'],
  containerd: ['oci', 'store'],
  mirror: ['oci', 'routing', 'store'],
  daemon: ['containerd', 'mirror', 'oci', 'routing', 'store']
}

/** The workspace packages a package's src/ imports. */
async function importedPackages(name: string): Promise<string[]> {
  const dir = join(packages, name, 'src')
  const found = new Set<string>()
  for (const file of (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.ts'))) {
    const text = await readFile(join(dir, file), 'utf8')
    // Import and export statements only (lines that start them or close a multi-line one), not doc examples.
    for (const match of text.matchAll(/^(?:import|export|\})[^'\n]*from '@kadmirror\/([a-z-]+)/gm))
      found.add(match[1] as string)
  }
  return [...found].sort()
}

async function listedPackages(name: string): Promise<string[]> {
  const manifest = JSON.parse(await readFile(join(packages, name, 'package.json'), 'utf8'))
  return Object.keys(manifest.dependencies ?? {})
    .filter((dep) => dep.startsWith('@kadmirror/'))
    .map((dep) => dep.slice('@kadmirror/'.length))
    .sort()
}

describe('package architecture', () => {
  it('has a rule for every package', async () => {
    const names = (await readdir(packages)).sort()
    assert.deepEqual(
      names.filter((name) => !(name in ALLOWED)),
      []
    )
  })

  for (const [name, allowed] of Object.entries(ALLOWED)) {
    it(`lets ${name} import ${allowed.length === 0 ? 'no other package' : `only ${allowed.join(', ')}`}, each listed as a dependency`, async () => {
      const imported = await importedPackages(name)
      assert.deepEqual(
        imported.filter((dep) => !allowed.includes(dep)),
        []
      )
      assert.deepEqual(await listedPackages(name), imported)
    })
  }
})
