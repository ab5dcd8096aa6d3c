/** `kadmirror version`: this package's version and the runtime's. */
import { readFileSync } from 'node:fs'
import type { OptionValues } from './resolve.ts'

/** This package's version, from its package.json. */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  return String(manifest.version)
}

/** What `version` prints: build and runtime facts. */
export function versionInfo(): Record<string, string> {
  return {
    version: packageVersion(),
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform}/${process.arch}`
  }
}

/** `kadmirror version`: one line of text, or the facts as JSON. */
export function runVersion(values: OptionValues): void {
  const info = versionInfo()
  if (values.text('format') === 'json') console.log(JSON.stringify(info))
  else console.log(`kadmirror ${info.version} (node ${info.node}, ${info.platform})`)
}
