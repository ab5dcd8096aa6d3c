/**
 * A cert dir as Spegel's `--http-bootstrap-cert-dir` and Kubernetes TLS secrets lay it out: `ca.crt`, `tls.crt`,
 * `tls.key`, each optional, read with a version that changes whenever a file changes (so rotations are noticed).
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidCertDirError } from './errors.ts'

/** File names in a cert dir (Kubernetes TLS secret keys, as Spegel reads them). */
export const CA_FILE = 'ca.crt'
export const CERT_FILE = 'tls.crt'
export const KEY_FILE = 'tls.key'

/** PEM contents of a cert dir; `version` changes whenever a file changes. */
export interface TlsMaterial {
  ca?: string
  cert?: string
  key?: string
  version: string
}

async function readOptional(path: string): Promise<{ text?: string; version: string }> {
  try {
    const info = await stat(path)
    return { text: await readFile(path, 'utf8'), version: `${info.mtimeMs}:${info.size}:${info.ino}` }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 'absent' }
    throw new InvalidCertDirError(`cannot read ${path}: ${(err as Error).message}`)
  }
}

/**
 * Reads `ca.crt`, `tls.crt` and `tls.key` from `dir`; each may be absent, but not a certificate without its key.
 * @throws {InvalidCertDirError}
 */
export async function readCertDir(dir: string): Promise<TlsMaterial> {
  const [ca, cert, key] = await Promise.all(
    [CA_FILE, CERT_FILE, KEY_FILE].map((name) => readOptional(join(dir, name)))
  )
  if ((cert?.text === undefined) !== (key?.text === undefined)) {
    throw new InvalidCertDirError(`${dir}: ${CERT_FILE} and ${KEY_FILE} must both be present or both absent`)
  }
  const material: TlsMaterial = { version: [ca, cert, key].map((f) => f?.version).join('|') }
  if (ca?.text !== undefined) material.ca = ca.text
  if (cert?.text !== undefined) material.cert = cert.text
  if (key?.text !== undefined) material.key = key.text
  return material
}
