/**
 * Basic-auth credentials as Spegel reads them: `username` and `password` files in `/etc/secrets/basic-auth` (a
 * mounted Secret). Absent directory or files: no auth.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BASIC_AUTH_DIR } from './constants.ts'

/** Username and password for the registry mirror. */
export interface BasicCredentials {
  username: string
  password: string
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/**
 * The credentials in `dir` (default {@link BASIC_AUTH_DIR}), or undefined when there are none.
 * @throws {Error} when only one of the two files is there, or a file cannot be read.
 */
export async function readCredentials(
  dir = process.env.KADMIRROR_BASIC_AUTH_DIR ?? BASIC_AUTH_DIR
): Promise<BasicCredentials | undefined> {
  const [username, password] = await Promise.all([
    readOptional(join(dir, 'username')),
    readOptional(join(dir, 'password'))
  ])
  if (username === undefined && password === undefined) return undefined
  if (username === undefined || password === undefined)
    throw new Error(`${dir} needs both username and password`)
  return { username, password }
}
