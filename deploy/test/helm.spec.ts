/**
 * The Helm chart, checked with the real `helm` (built from the Go module proxy): lint, a golden render of the
 * defaults, every rendered object strictly decoded against the Kubernetes API types (deploy/helm/validate, Go), an
 * operator's Spegel-style values and Spegel's own default values file rendering a working DaemonSet, and every
 * container's arguments accepted by the kadmirror CLI.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { COMMANDS, GLOBAL_OPTIONS, type OptionSpec, resolveOptions } from '@kadmirror/daemon'
import { buildGoProgram, buildHelm, goUnavailable } from '@kadmirror/test-support/go-builds'
import { parseAllDocuments } from 'yaml'

const run = promisify(execFile)
const deployDir = dirname(dirname(fileURLToPath(import.meta.url)))
const chart = join(deployDir, 'helm', 'kadmirror')
const golden = join(deployDir, 'helm', 'golden', 'default.yaml')
const spegelStyle = join(deployDir, 'helm', 'test-values', 'spegel-style.yaml')
const anchors = join(dirname(deployDir), '..', 'shared', 'anchors', 'spegel-main-b8c715a.tar.gz')

interface Rendered {
  kind: string
  metadata: { name: string; annotations?: Record<string, string> }
  spec?: Record<string, unknown>
  data?: Record<string, string>
}
interface Container {
  name: string
  args?: string[]
  env?: { name: string }[]
}

/** The `--flag=value` / `--flag v1 v2` arguments of one container, as the CLI's option resolver takes them. */
function flagsOf(args: string[], specs: readonly OptionSpec[]): Record<string, string | string[] | boolean> {
  const flags: Record<string, string | string[] | boolean> = {}
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    assert.ok(arg.startsWith('--'), `argument ${arg} is not a flag`)
    const [name, value] = arg.slice(2).split(/=(.*)/s) as [string, string | undefined]
    const spec = specs.find((s) => s.flag === name)
    assert.ok(spec !== undefined, `--${name} is not an option of the command`)
    if (value !== undefined) flags[name] = spec.list ? [value] : value
    else if (spec.boolean) flags[name] = true
    else {
      const values: string[] = []
      while (i + 1 < args.length && !(args[i + 1] as string).startsWith('--'))
        values.push(args[++i] as string)
      flags[name] = spec.list ? values : (values[0] ?? '')
    }
  }
  return flags
}

/** Checks a container's arguments against the kadmirror command they name ($(NODE_IP) as Kubernetes expands it). */
function assertAcceptedByCli(container: Container): void {
  const [command, ...rest] = (container.args ?? []).map((a) => a.replaceAll('$(NODE_IP)', '10.0.0.1'))
  const spec = COMMANDS.find((c) => c.name === command)
  assert.ok(spec !== undefined, `${container.name}: ${command} is not a kadmirror command`)
  const specs = [...GLOBAL_OPTIONS, ...spec.options]
  resolveOptions(specs, { flags: flagsOf(rest, specs), env: {} })
}

function containersOf(objects: Rendered[]): Container[] {
  const pods = objects.flatMap((o) => {
    if (o.kind === 'Pod') return [o.spec]
    if (o.kind === 'DaemonSet') return [(o.spec?.template as { spec: unknown } | undefined)?.spec]
    return []
  }) as { containers: Container[]; initContainers?: Container[] }[]
  return pods
    .flatMap((p) => [...(p.initContainers ?? []), ...p.containers])
    .filter((c) => c.args !== undefined)
}

describe('the Helm chart', function () {
  this.timeout(900_000)
  let helm: string
  let validator: string
  let dir: string

  before(async function () {
    const reason = await goUnavailable()
    if (reason !== undefined) {
      console.log(`    skipped: ${reason}`)
      this.skip()
    }
    helm = await buildHelm()
    validator = await buildGoProgram(join(deployDir, 'helm', 'validate'), 'helm-validate')
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-helm-'))
  })

  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const render = async (...args: string[]): Promise<string> =>
    (await run(helm, ['template', 'kadmirror', chart, '--namespace', 'kadmirror', ...args])).stdout
  const objects = (text: string): Rendered[] =>
    parseAllDocuments(text)
      .map((d) => d.toJS() as Rendered | null)
      .filter((o): o is Rendered => o !== null)
  /** Runs the strict validator on `text`; resolves its output, rejects with it when it finds problems. */
  const validate = async (text: string, name: string): Promise<string> => {
    const file = join(dir, `${name}.yaml`)
    await writeFile(file, text)
    try {
      return (await run(validator, [file])).stdout
    } catch (err) {
      throw new Error(`${name}: ${(err as { stdout?: string }).stdout ?? err}`)
    }
  }
  /** Spegel's own chart values, `spegel:` renamed `kadmirror:`. */
  const spegelDefaults = async (): Promise<string> => {
    const { stdout } = await run('tar', ['-xzOf', anchors, 'spegel-main-b8c715a/charts/spegel/values.yaml'])
    const file = join(dir, 'spegel-values.yaml')
    await writeFile(file, stdout.replace(/^spegel:/m, 'kadmirror:'))
    return file
  }

  it('passes helm lint --strict with the default values and with Spegel-style values', async () => {
    await run(helm, ['lint', '--strict', chart])
    await run(helm, ['lint', '--strict', chart, '-f', spegelStyle])
  })

  it('renders the default values as the golden file (UPDATE_GOLDEN=1 rewrites it)', async () => {
    const text = await render()
    if (process.env.UPDATE_GOLDEN === '1') await writeFile(golden, text)
    assert.equal(text, await readFile(golden, 'utf8'))
  })

  it('renders default objects that decode strictly against the Kubernetes API types', async () => {
    assert.match(await validate(await render(), 'default'), /^8 objects valid/)
  })

  it('renders Spegel-style values (top key renamed) into objects that decode strictly', async () => {
    const text = await render('-f', spegelStyle)
    assert.match(await validate(text, 'spegel-style'), /^11 objects valid/)
    const kinds = objects(text).map((o) => o.kind)
    for (const kind of ['ServiceMonitor', 'ConfigMap', 'NetworkPolicy']) assert.ok(kinds.includes(kind), kind)
  })

  it("renders Spegel's own default values file, top key renamed, into objects that decode strictly", async function () {
    if (!existsSync(anchors)) {
      console.log(`      skipped: Spegel's chart is not at ${anchors}`)
      this.skip()
    }
    const text = await render(
      '-f',
      await spegelDefaults(),
      '--set',
      'image.repository=ghcr.io/kadmirror/kadmirror'
    )
    assert.match(await validate(text, 'spegel-defaults'), /^8 objects valid/)
    for (const container of containersOf(objects(text))) assertAcceptedByCli(container)
  })

  it("passes every container's arguments to a kadmirror command that accepts them", async () => {
    for (const text of [await render(), await render('-f', spegelStyle)]) {
      const containers = containersOf(objects(text))
      assert.deepEqual(
        containers.map((c) => c.args?.[0]),
        ['configuration', 'registry', 'cleanup', 'cleanup-wait']
      )
      for (const container of containers) assertAcceptedByCli(container)
    }
  })

  it('has a validator that rejects a misspelt field, a mount of no volume and an undefined $(VAR)', async () => {
    const text = await render()
    const broken = [
      text.replace('readinessProbe:', 'readinesProbe:'),
      text.replace(
        'name: containerd-sock\n          hostPath',
        'name: containerd-socket\n          hostPath'
      ),
      text.replace('http://$(NODE_IP)', 'http://$(NODE_ADDRESS)')
    ]
    for (const [i, variant] of broken.entries()) await assert.rejects(validate(variant, `broken-${i}`))
  })

  it("tells containerd the node's own mirror: the configuration init container targets NODE_IP and the NodePort", async () => {
    const ds = objects(await render()).find((o) => o.kind === 'DaemonSet' && o.metadata.name === 'kadmirror')
    const template = ds?.spec?.template as { spec: { initContainers: Container[] } } | undefined
    const init = template?.spec.initContainers[0]
    assert.ok(init?.args?.includes('http://$(NODE_IP):30020'))
    assert.ok(init?.env?.some((e) => e.name === 'NODE_IP'))
  })

  it('bootstraps through a headless Service that publishes pods before they are ready, named in --dns-bootstrap-domain', async () => {
    const all = objects(await render())
    const bootstrap = all.find((o) => o.metadata.name === 'kadmirror-bootstrap')
    assert.equal(bootstrap?.spec?.clusterIP, 'None')
    assert.equal(bootstrap?.spec?.publishNotReadyAddresses, true)
    const registry = containersOf(all).find((c) => c.args?.[0] === 'registry')
    assert.ok(
      registry?.args?.includes('--dns-bootstrap-domain=kadmirror-bootstrap.kadmirror.svc.cluster.local.')
    )
  })

  it('ships the Grafana dashboard as a ConfigMap holding deploy/grafana/kadmirror.json', async () => {
    const text = await render('--set', 'grafanaDashboard.enabled=true')
    const map = objects(text).find((o) => o.kind === 'ConfigMap')
    const file = await readFile(join(deployDir, 'grafana', 'kadmirror.json'), 'utf8')
    assert.deepEqual(JSON.parse(map?.data?.['kadmirror.json'] ?? ''), JSON.parse(file))
  })

  it('refuses GrafanaOperator mode without matchLabels, and renders a GrafanaDashboard with them', async () => {
    await assert.rejects(
      render('--set', 'grafanaDashboard.enabled=true', '--set', 'grafanaDashboard.mode=GrafanaOperator'),
      /matchLabels must be set/
    )
    const text = await render(
      ...['--set', 'grafanaDashboard.enabled=true', '--set', 'grafanaDashboard.mode=GrafanaOperator'],
      ...['--set', 'grafanaDashboard.grafanaOperator.matchLabels.dashboards=grafana']
    )
    assert.match(await validate(text, 'grafana-operator'), /^9 objects valid/)
  })

  it('renders the VerticalPodAutoscaler only where the cluster serves autoscaling.k8s.io/v1', async () => {
    const on = ['--set', 'verticalPodAutoscaler.enabled=true']
    assert.ok(!objects(await render(...on)).some((o) => o.kind === 'VerticalPodAutoscaler'))
    const text = await render(...on, '--api-versions', 'autoscaling.k8s.io/v1')
    assert.ok(objects(text).some((o) => o.kind === 'VerticalPodAutoscaler'))
    assert.match(await validate(text, 'vpa'), /^9 objects valid/)
  })

  it('leaves out the mirror configuration and the cleanup hook when containerdMirrorAdd is false', async () => {
    const all = objects(await render('--set', 'kadmirror.containerdMirrorAdd=false'))
    assert.deepEqual(
      containersOf(all).map((c) => c.args?.[0]),
      ['registry']
    )
    assert.ok(!all.some((o) => o.metadata.annotations?.['helm.sh/hook'] !== undefined))
  })
})
