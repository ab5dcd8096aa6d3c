#!/usr/bin/env node
// The README's commands (`npm start`, `npm test`, `npm run bench`) go through this script. It runs on any
// Node.js with npm: when the node on PATH is older than the project needs, it brings Node 24 from the npm
// registry into .tools/, installs the pinned pnpm there, installs the workspace, then runs the task.
// Plain JavaScript on purpose: it must start on Node 20.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const tools = join(root, '.tools')
const MIN_NODE = [22, 19]
const NODE_PACKAGE = 'node@24'
const pnpmVersion = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager.split('@')[1]

function log(message) {
  process.stderr.write(`[kadmirror] ${message}\n`)
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: root, ...options })
  if (result.error) throw result.error
  return result.status ?? 1
}

function must(command, args, options) {
  const status = run(command, args, options)
  if (status !== 0) {
    log(`${command} ${args.join(' ')} failed with exit code ${status}`)
    process.exit(status)
  }
}

function nodeIsRecentEnough(version) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number)
  return major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])
}

/** Re-runs this script under Node 24 from .tools/node when the current node is too old. */
function ensureNode() {
  if (nodeIsRecentEnough(process.version)) return
  const node = join(tools, 'node', 'node_modules', '.bin', 'node')
  if (!existsSync(node)) {
    log(
      `node ${process.version} is older than ${MIN_NODE.join('.')}; installing ${NODE_PACKAGE} from the npm registry into .tools/node`
    )
    must('npm', [
      'install',
      '--prefix',
      join(tools, 'node'),
      '--no-save',
      '--no-audit',
      '--no-fund',
      NODE_PACKAGE
    ])
  }
  const status = run(node, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    env: { ...process.env, PATH: `${dirname(node)}:${process.env.PATH}` }
  })
  process.exit(status)
}

/** The pinned pnpm: the one on PATH when its version matches, else one installed into .tools/pnpm. */
function ensurePnpm() {
  const onPath = spawnSync('pnpm', ['--version'], { encoding: 'utf8' })
  if (onPath.status === 0 && onPath.stdout.trim() === pnpmVersion) return 'pnpm'
  const pnpm = join(tools, 'pnpm', 'node_modules', '.bin', 'pnpm')
  if (!existsSync(pnpm)) {
    log(`installing pnpm@${pnpmVersion} into .tools/pnpm`)
    must('npm', [
      'install',
      '--prefix',
      join(tools, 'pnpm'),
      '--no-save',
      '--no-audit',
      '--no-fund',
      '-E',
      `pnpm@${pnpmVersion}`
    ])
  }
  return pnpm
}

/** Installs the workspace when node_modules is missing or older than the lockfile. */
function ensureInstalled(pnpm) {
  const marker = join(root, 'node_modules', '.modules.yaml')
  const lock = join(root, 'pnpm-lock.yaml')
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return
  must(pnpm, ['install', '--frozen-lockfile'])
}

function bin(name) {
  return join(root, 'node_modules', '.bin', name)
}

/** Runs every test suite under coverage and ends with one plain line: `N passed, N failed, N skipped`. */
function test(args) {
  const dir = mkdtempSync(join(tmpdir(), 'kadmirror-test-'))
  const statsFile = join(dir, 'stats.json')
  try {
    const status = run(bin('c8'), [bin('mocha'), ...args], {
      env: { ...process.env, KADMIRROR_TEST_STATS: statsFile }
    })
    const stats = existsSync(statsFile) ? JSON.parse(readFileSync(statsFile, 'utf8')) : undefined
    if (stats === undefined) {
      log('the test runner ended without writing its totals')
      console.log('0 passed, 1 failed')
      return status === 0 ? 1 : status
    }
    console.log(`${stats.passes} passed, ${stats.failures} failed, ${stats.pending} skipped`)
    return stats.failures > 0 && status === 0 ? 1 : status
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Runs an example from the repository root: `examples/<name>/src/main.ts` with `args`, or the first ```ts block of
 * `packages/<name>/README.md` (written next to the package's sources so its imports resolve as a user's would).
 */
function example(name, args) {
  const main = join(root, 'examples', name ?? '', 'src', 'main.ts')
  if (name !== undefined && existsSync(main)) return run(process.execPath, [main, ...args])
  const readme = join(root, 'packages', name ?? '', 'README.md')
  if (name === undefined || !existsSync(readme)) {
    log(
      `usage: npm run example -- <example or package> [args…]; examples: ${readdirSync(join(root, 'examples')).join(', ')}; packages: ${readdirSync(join(root, 'packages')).join(', ')}`
    )
    return 2
  }
  const code = /```ts\n([\s\S]*?)```/.exec(readFileSync(readme, 'utf8'))?.[1]
  if (code === undefined) {
    log(`packages/${name}/README.md has no ts example`)
    return 2
  }
  const file = join(root, 'packages', name, 'readme-example.tmp.ts')
  writeFileSync(file, code)
  try {
    return run(process.execPath, [file, ...args], { cwd: join(root, 'packages', name) })
  } finally {
    rmSync(file, { force: true })
  }
}

ensureNode()
const pnpm = ensurePnpm()
ensureInstalled(pnpm)
const [task, ...rest] = process.argv.slice(2)
switch (task) {
  case 'start':
    process.exit(run(process.execPath, [join(root, 'examples', 'cluster-demo', 'src', 'main.ts'), ...rest]))
    break
  case 'test':
    process.exit(test(rest))
    break
  case 'bench':
    process.exit(run(process.execPath, ['--expose-gc', join(root, 'bench', 'src', 'run.ts'), ...rest]))
    break
  case 'example':
    process.exit(example(rest[0], rest.slice(1)))
    break
  case 'pnpm':
    process.exit(run(pnpm, rest))
    break
  default:
    log('usage: node scripts/run.mjs start|test|bench|example|pnpm [args…]')
    process.exit(2)
}
