/**
 * @packageDocumentation
 * The kadmirror node daemon. {@link createNode} is the one composition root of a node — store, registry mirror,
 * router, advertiser, metrics — started in order and closed in reverse; the `kadmirror` CLI (Spegel's commands and
 * flags) only turns options into its arguments.
 *
 * @example
 * ```ts
 * import { createNode } from '@kadmirror/daemon'
 * import { staticBootstrapper } from '@kadmirror/routing'
 *
 * const node = await createNode({
 *   store: { kind: 'oci-layout', directory: '/var/lib/kadmirror/layout' },
 *   router: { dataDir: '/var/lib/kadmirror', bootstrapper: staticBootstrapper(['/ip4/10.0.0.2/tcp/5001']) }
 * })
 * console.log(node.registryUrl, node.metricsUrl)
 * await node.close()
 * ```
 */
export { COMMANDS, type CommandSpec, createLogger, main } from './cli.ts'
export * as constants from './constants.ts'
export { type BasicCredentials, readCredentials } from './credentials.ts'
export { createNodeMetrics, handlerLabel, type NodeMetrics, type NodeMetricsSources } from './metrics.ts'
export { type MetricsServer, type MetricsServerInit, startMetricsServer } from './metrics-server.ts'
export {
  createNode,
  type KadmirrorNode,
  type ListenAddress,
  type NodeOptions,
  type StoreOption
} from './node.ts'
export {
  BOOTSTRAP_SERVER_OPTIONS,
  CLEANUP_OPTIONS,
  CLEANUP_WAIT_OPTIONS,
  CONFIGURATION_OPTIONS,
  GLOBAL_OPTIONS,
  type OptionSpec,
  parseStore,
  REGISTRY_OPTIONS,
  VERSION_OPTIONS
} from './options.ts'
export { PendingStore } from './pending-store.ts'
export { registryNodeOptions, routerListen } from './registry-command.ts'
export {
  type OptionValue,
  OptionValues,
  type ResolvedOptions,
  readConfigFile,
  resolveOptions,
  UsageError,
  type ValueSource
} from './resolve.ts'
export {
  InvalidValueError,
  LOG_LEVELS,
  type LogLevel,
  parseBoolean,
  parseByteSize,
  parseDuration,
  parseHttpUrl,
  parseInteger,
  parseListenAddress,
  parseLogLevel,
  parseRegex,
  splitList
} from './values.ts'
export { versionInfo } from './version.ts'
