// A child process spoken to in lines: each request line gets one JSON answer line.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'

/** A child process answering one JSON line per request line. */
export interface LineProcess {
  request<T>(line: string, timeoutMs?: number): Promise<T>
  /** The last 16 000 characters the process wrote to stderr. */
  stderr(): string
  /** Sends a signal (for example SIGSTOP to freeze the process, SIGCONT to thaw it). */
  signal(name: NodeJS.Signals): void
  kill(): void
}

/** Spawns `command`; stderr is kept for error messages. */
export function spawnLineProcess(command: string, args: string[]): LineProcess {
  const child: ChildProcessWithoutNullStreams = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-16_000)
  })
  const waiting: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = []
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.resolve(line))
  child.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${command} exited with ${code}: ${stderr}`))
  })
  return {
    request<T>(line: string, timeoutMs = 30_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no answer to ${line} within ${timeoutMs} ms: ${stderr}`)),
          timeoutMs
        )
        waiting.push({
          resolve: (answer) => {
            clearTimeout(timer)
            try {
              const value = JSON.parse(answer) as T & { error?: string }
              if (typeof value === 'object' && value !== null && 'error' in value)
                reject(new Error(String(value.error)))
              else resolve(value)
            } catch (err) {
              reject(err as Error)
            }
          },
          reject: (err) => {
            clearTimeout(timer)
            reject(err)
          }
        })
        child.stdin.write(`${line}\n`)
      })
    },
    stderr: () => stderr,
    signal: (name) => {
      child.kill(name)
    },
    kill: () => child.kill('SIGKILL')
  }
}
