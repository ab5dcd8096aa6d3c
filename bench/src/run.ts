/**
 * Runs the benchmarks named on the command line (default: all but soak and compare). Each prints a table and writes JSON to
 * bench/results/<name>.json. Usage: node bench/src/run.ts [store|dht|daemon|mirror|containerd|e2e|hop-floor|soak|compare|swarm|flash-crowd|sim] [-- bench options]
 */
import { benchCompare } from './compare.ts'
import { benchContainerd } from './containerd.ts'
import { benchDaemon } from './daemon.ts'
import { benchDht } from './dht.ts'
import { benchE2e } from './e2e.ts'
import { benchFlashCrowd } from './flash-crowd.ts'
import { benchHopFloor } from './hop-floor.ts'
import { benchMirror } from './mirror.ts'
import { benchSim } from './sim.ts'
import { benchSoak } from './soak.ts'
import { benchStore } from './store.ts'
import { benchSwarm } from './swarm.ts'

const BENCHES: Record<string, (args: string[]) => Promise<boolean>> = {
  store: benchStore,
  dht: benchDht,
  daemon: benchDaemon,
  mirror: benchMirror,
  e2e: benchE2e,
  containerd: benchContainerd,
  soak: benchSoak,
  compare: benchCompare,
  'hop-floor': benchHopFloor,
  swarm: benchSwarm,
  'flash-crowd': benchFlashCrowd,
  sim: benchSim
}

const args = process.argv.slice(2)
const firstOption = args.findIndex((a) => a.startsWith('-'))
const names = firstOption < 0 ? args : args.slice(0, firstOption)
const options = firstOption < 0 ? [] : args.slice(firstOption).filter((a) => a !== '--')
const unknown = names.filter((n) => !(n in BENCHES))
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; known: ${Object.keys(BENCHES).join(', ')}`)
  process.exit(2)
}
/** Run only when named: they take long. */
const ON_REQUEST = new Set(['soak', 'compare', 'swarm', 'flash-crowd', 'sim'])
for (const name of names.length > 0 ? names : Object.keys(BENCHES).filter((n) => !ON_REQUEST.has(n))) {
  await (BENCHES[name] as (args: string[]) => Promise<boolean>)(options)
}
