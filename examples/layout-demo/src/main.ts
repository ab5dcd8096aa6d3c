/**
 * The main job for now: build an OCI image layout with generated images, print every key a kadmirror node
 * would advertise for it (digests and tag references, counted per registry), then remove an image and
 * print the withdrawals its store announces.
 *
 * Usage: node examples/layout-demo/src/main.ts [--dir DIR] [--layer-mib N] [--keep]
 */
import { randomFillSync } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildImage, buildIndex } from '@kadmirror/oci'
import { openOciLayoutStore, type StoreEvent, type StoreKey } from '@kadmirror/store'

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    'layer-mib': { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false }
  }
})
const layerBytes = Math.round(Number(values['layer-mib']) * 1024 * 1024)
if (!Number.isFinite(layerBytes) || layerBytes < 0) {
  console.error(`--layer-mib must be a non-negative number, got ${values['layer-mib']}`)
  process.exit(2)
}

const directory = values.dir ?? (await mkdtemp(join(tmpdir(), 'kadmirror-demo-')))
const layer = (size: number): Uint8Array => randomFillSync(new Uint8Array(size))

const store = await openOciLayoutStore({ directory })
try {
  const events: StoreEvent[] = []
  const subscription = (async () => {
    for await (const event of store.subscribe()) events.push(event)
  })()

  const shared = layer(layerBytes)
  const multiPlatform = buildIndex([
    buildImage({ layers: [shared, layer(layerBytes)], platform: { architecture: 'amd64', os: 'linux' } }),
    buildImage({ layers: [shared, layer(layerBytes)], platform: { architecture: 'arm64', os: 'linux' } })
  ])
  const small = buildImage({ layers: [layer(1024)] })
  await store.addImage('registry.example.com/team/app:1.0', multiPlatform)
  await store.addImage('registry.k8s.io/pause:3.10', small)
  await store.addImage('docker.io/library/busybox:latest', buildImage({ layers: [shared] }))

  const keys: StoreKey[] = []
  for await (const key of store.keys()) keys.push(key)
  console.log(`OCI image layout: ${directory}`)
  console.log(`\nKeys this node would advertise (${keys.length}):`)
  for (const key of keys.sort((a, b) => a.key.localeCompare(b.key))) {
    const kind = key.key === key.digest ? 'digest   ' : 'reference'
    const target = key.key === key.digest ? '' : ` -> ${key.digest}`
    console.log(`  ${kind} ${key.key}${target}`)
  }
  const perRegistry = new Map<string, number>()
  for (const key of keys)
    perRegistry.set(key.registry ?? '(none)', (perRegistry.get(key.registry ?? '(none)') ?? 0) + 1)
  console.log('\nKeys per registry:')
  for (const [registry, count] of perRegistry) console.log(`  ${registry.padEnd(24)} ${count}`)

  const before = events.length
  await store.removeImage('registry.k8s.io/pause:3.10')
  await new Promise((resolve) => setImmediate(resolve)) // let the subscriber take the queued events
  const withdrawn = events.slice(before).filter((e) => e.type === 'removed')
  console.log(`\nRemoved registry.k8s.io/pause:3.10; keys to withdraw (${withdrawn.length}):`)
  for (const event of withdrawn) console.log(`  ${event.key.key}`)
  console.log(
    `\nEvents announced in all: ${events.filter((e) => e.type === 'added').length} added, ${events.filter((e) => e.type === 'removed').length} removed`
  )

  await store.close()
  await subscription
} finally {
  await store.close()
  if (values.dir === undefined && !values.keep) await rm(directory, { recursive: true, force: true })
  else console.log(`\nLayout kept at ${directory}`)
}
