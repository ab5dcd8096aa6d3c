// Test PKI made with the openssl command line: a CA per test, server and client certificates signed by it.
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** True when the openssl command is available; tests that need it skip with a printed reason otherwise. */
export async function haveOpenssl(): Promise<boolean> {
  try {
    await run('openssl', ['version'])
    return true
  } catch {
    return false
  }
}

/** A temporary directory holding CAs and certificates; `cleanup()` removes it. */
export interface Pki {
  root: string
  /** Makes a CA named `name`. */
  ca(name: string): Promise<{ cert: string; key: string }>
  /** Makes a certificate for 127.0.0.1/localhost signed by `ca`; `days` may be negative for an expired one. */
  leaf(ca: { cert: string; key: string }, name: string, days?: number): Promise<{ cert: string; key: string }>
  /** Writes a cert dir (`ca.crt`, `tls.crt`, `tls.key`) at `dir` from the given files. */
  certDir(dir: string, files: { ca?: string; cert?: string; key?: string }): Promise<string>
  cleanup(): Promise<void>
}

export async function createPki(): Promise<Pki> {
  const root = await mkdtemp(join(tmpdir(), 'kadmirror-pki-'))
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  return {
    root,
    async ca(name) {
      const cert = join(root, `${name}.crt`)
      const key = join(root, `${name}.key`)
      await run('openssl', [
        'req',
        '-x509',
        ...ec,
        '-keyout',
        key,
        '-out',
        cert,
        '-subj',
        `/CN=${name}`,
        '-days',
        '2'
      ])
      return { cert, key }
    },
    async leaf(ca, name, days = 2) {
      const cert = join(root, `${name}.crt`)
      const key = join(root, `${name}.key`)
      const csr = join(root, `${name}.csr`)
      const ext = join(root, `${name}.ext`)
      await writeFile(
        ext,
        'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n'
      )
      await run('openssl', ['req', '-new', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`])
      await run('openssl', [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca.cert,
        '-CAkey',
        ca.key,
        '-CAcreateserial',
        '-out',
        cert,
        '-days',
        String(days),
        '-extfile',
        ext
      ])
      return { cert, key }
    },
    async certDir(dir, files) {
      await mkdir(dir, { recursive: true })
      for (const [source, name] of [
        [files.ca, 'ca.crt'],
        [files.cert, 'tls.crt'],
        [files.key, 'tls.key']
      ] as const) {
        if (source !== undefined) await copyFile(source, join(dir, name))
        else await rm(join(dir, name), { force: true })
      }
      return dir
    },
    cleanup: () => rm(root, { recursive: true, force: true })
  }
}
