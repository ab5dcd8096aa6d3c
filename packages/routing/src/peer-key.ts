/**
 * The node's persistent libp2p identity: an Ed25519 key in `<dataDir>/private.key`, PEM PKCS#8 as Spegel
 * writes it, so a node keeps its peer id across restarts and across a switch between Spegel and kadmirror.
 */
import { createPrivateKey, generateKeyPairSync } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { InvalidPeerKeyError } from './errors.ts'

/** File name of the key inside the data directory (Spegel's). */
export const PEER_KEY_FILE = 'private.key'

/**
 * Loads the peer key from `dataDir`, or creates one (file mode 0600, directory created 0700) on first start.
 * @throws {InvalidPeerKeyError} when the file exists but holds no Ed25519 PKCS#8 key.
 */
export async function loadOrCreatePeerKey(dataDir: string): Promise<Ed25519PrivateKey> {
  const path = join(dataDir, PEER_KEY_FILE)
  let pem: string | undefined
  try {
    pem = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (pem === undefined) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const { privateKey } = generateKeyPairSync('ed25519')
    pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
    await writeFile(path, pem, { mode: 0o600, flag: 'wx' })
  }
  let seed: string | undefined
  try {
    const key = createPrivateKey({ key: pem, format: 'pem' })
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`key type is ${key.asymmetricKeyType}`)
    seed = key.export({ format: 'jwk' }).d
  } catch (err) {
    throw new InvalidPeerKeyError(
      `${path} is not a PEM PKCS#8 Ed25519 private key: ${(err as Error).message}`
    )
  }
  if (seed === undefined) throw new InvalidPeerKeyError(`${path} has no private part`)
  return generateKeyPairFromSeed('Ed25519', Buffer.from(seed, 'base64url'))
}
