#!/usr/bin/env node
// Builds the daemon as operators run it: one JavaScript file with every dependency inside (esbuild), in an
// application directory of its own that needs only the Node.js runtime:
//
//   <out>/bin/kadmirror.mjs   the CLI (`node <out>/bin/kadmirror.mjs registry …`)
//   <out>/proto/              containerd's .proto subset, read at run time by @kadmirror/containerd
//   <out>/package.json        name, version, "type": "module"
//
// Usage: node packages/daemon/scripts/bundle.mjs [--out DIR]   (default packages/daemon/dist/app)
// Plain JavaScript so that it runs before anything is built.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const daemonDir = dirname(dirname(fileURLToPath(import.meta.url)))
const packagesDir = dirname(daemonDir)

/** Where the application directory goes: --out DIR, or dist/app. */
function outDir(argv) {
  const at = argv.indexOf('--out')
  if (at === -1) return join(daemonDir, 'dist', 'app')
  const value = argv[at + 1]
  if (value === undefined || value.startsWith('-')) {
    process.stderr.write('bundle: --out needs a directory\n')
    process.exit(2)
  }
  return resolve(value)
}

/**
 * Escapes what esbuild leaves non-ASCII (it keeps regular expression literals as written). V8 keeps a script's
 * source in memory for its whole life, and one character above U+00FF makes it a two-byte string: twice the
 * memory (7 MiB instead of 3.5 for the daemon).
 */
function asciiOnly(file) {
  const source = readFileSync(file, 'utf8')
  const escaped = source.replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
  )
  writeFileSync(file, escaped)
}

/** Bundles the CLI into `<out>/bin/kadmirror.mjs` and copies what it reads at run time beside it. */
export async function bundleDaemon(out) {
  const manifest = JSON.parse(readFileSync(join(daemonDir, 'package.json'), 'utf8'))
  rmSync(out, { recursive: true, force: true })
  mkdirSync(join(out, 'bin'), { recursive: true })
  await build({
    entryPoints: [join(daemonDir, 'src', 'cli.ts')],
    outfile: join(out, 'bin', 'kadmirror.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22.19',
    minifySyntax: true,
    minifyWhitespace: true,
    minifyIdentifiers: true,
    charset: 'ascii',
    legalComments: 'linked',
    logLevel: 'warning',
    // CommonJS dependencies call require() for Node's built-in modules; an ES module has no require of its own.
    banner: {
      js: "import { createRequire as __kadmirrorRequire } from 'node:module';const require = __kadmirrorRequire(import.meta.url);"
    }
  })
  asciiOnly(join(out, 'bin', 'kadmirror.mjs'))
  cpSync(join(packagesDir, 'containerd', 'proto'), join(out, 'proto'), { recursive: true })
  const app = { name: manifest.name, version: manifest.version, type: 'module', license: manifest.license }
  writeFileSync(join(out, 'package.json'), `${JSON.stringify(app, null, 2)}\n`)
  return join(out, 'bin', 'kadmirror.mjs')
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const cli = await bundleDaemon(outDir(process.argv.slice(2)))
  process.stdout.write(`${cli}\n`)
}
