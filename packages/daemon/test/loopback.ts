// Nodes for the daemon's in-process tests: createNode on loopback with an OCI-layout store, ephemeral ports and
// static bootstrap to a seed node; and where a Debian tool is installed.
import { execFileSync } from 'node:child_process'
import { staticBootstrapper } from '@kadmirror/routing'
import { createNode, type KadmirrorNode } from '../src/node.ts'

/** A node on 127.0.0.1 over the OCI layout in `layout`, bootstrapped from `seed` when given. */
export function loopbackNode(layout: string, seed?: KadmirrorNode): Promise<KadmirrorNode> {
  const bootstrap = seed?.router.addresses().map((a) => `${a}/p2p/${seed.router.peerId}`)
  return createNode({
    store: { kind: 'oci-layout', directory: layout },
    registry: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    router: {
      listen: ['/ip4/127.0.0.1/tcp/0'],
      allowLoopback: true,
      ...(bootstrap === undefined ? {} : { bootstrapper: staticBootstrapper(bootstrap) })
    }
  })
}

/** The path of the first of `commands` on PATH, or undefined when none is installed. */
export function installed(...commands: string[]): string | undefined {
  const script = commands.map((c) => `command -v ${c}`).join(' || ')
  try {
    return execFileSync('sh', ['-c', script], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}
