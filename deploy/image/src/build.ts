#!/usr/bin/env node
/**
 * Builds the kadmirror container image as an OCI image layout, reproducibly, with no container engine:
 *
 *   node deploy/image/src/build.ts [--out DIR] [--arch amd64,arm64] [--archive FILE] [--app DIR] [--tag TAG]
 *                                  [--offline] [--fetch-only] [--host-tree DIR]
 *
 * --out         the layout directory (default deploy/image/out); load it with
 *               `skopeo copy --all oci:DIR:TAG docker://REGISTRY/kadmirror:TAG`
 * --archive     also write the layout as one tar file, for `ctr images import`
 * --app         an application directory made by `pnpm --filter @kadmirror/daemon bundle` (default: bundled now)
 * --offline     use only the download cache; --fetch-only: fill the cache and stop
 * --host-tree   instead of an image, write what the systemd unit runs (nodejs/ and app/, first --arch) under DIR
 * Prints one JSON object: the index digest, and each architecture's manifest digest and compressed size.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type Architecture, buildImageLayout, fetchImageInputs, writeHostTree } from './index.ts'

const ARCHITECTURES: readonly Architecture[] = ['amd64', 'arm64']

function fail(message: string): never {
  process.stderr.write(`build-image: ${message}\n`)
  process.exit(2)
}

function architectures(value: string): Architecture[] {
  const list = value.split(',').map((a) => a.trim())
  for (const arch of list) if (!ARCHITECTURES.includes(arch as Architecture)) fail(`unknown --arch ${arch}`)
  return list as Architecture[]
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(dirname(dirname(fileURLToPath(import.meta.url))), 'out') },
      arch: { type: 'string', default: ARCHITECTURES.join(',') },
      archive: { type: 'string' },
      app: { type: 'string' },
      tag: { type: 'string' },
      offline: { type: 'boolean', default: false },
      'fetch-only': { type: 'boolean', default: false },
      'host-tree': { type: 'string' }
    }
  })
  const arch = architectures(values.arch)
  if (values['fetch-only']) return fetchImageInputs(arch)
  if (values['host-tree'] !== undefined)
    return writeHostTree(values['host-tree'], arch[0] as Architecture, values.offline)
  const summary = await buildImageLayout({
    out: values.out,
    architectures: arch,
    offline: values.offline,
    ...(values.archive === undefined ? {} : { archive: values.archive }),
    ...(values.app === undefined ? {} : { appDir: values.app }),
    ...(values.tag === undefined ? {} : { tag: values.tag })
  })
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)))
