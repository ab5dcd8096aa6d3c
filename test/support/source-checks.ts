/**
 * Checks of a package's sources that keep its conventions from drifting, for the packages' tests: functions short
 * enough to read at once, `@default` tags that agree with the constants they name, and an error-code table in the
 * README that agrees with the code. Reads the TypeScript sources with the TypeScript compiler's parser.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import ts from 'typescript'

/** A function longer than allowed. */
export interface LongFunction {
  file: string
  /** The function's name, or `<anonymous>` with its first line. */
  name: string
  line: number
  lines: number
}

/** The `.ts` files directly in `dir`, with their text. */
async function sources(dir: string): Promise<Array<{ file: string; text: string }>> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.ts')).sort()
  return Promise.all(names.map(async (file) => ({ file, text: await readFile(join(dir, file), 'utf8') })))
}

function functionName(node: ts.Node, source: ts.SourceFile): string {
  const named = node as ts.Node & { name?: ts.Node }
  if (named.name !== undefined) return named.name.getText(source)
  const parent = node.parent
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))
    return parent.name.getText(source)
  return '<anonymous>'
}

/** Every function (declarations, methods, arrow functions, constructors) in `dir`'s sources longer than `maxLines` lines. */
export async function longFunctions(dir: string, maxLines: number): Promise<LongFunction[]> {
  const found: LongFunction[] = []
  for (const { file, text } of await sources(dir)) {
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
    const visit = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
        const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line
        const last = source.getLineAndCharacterOfPosition(node.getEnd()).line
        if (last - first + 1 > maxLines)
          found.push({ file, name: functionName(node, source), line: first + 1, lines: last - first + 1 })
      }
      ts.forEachChild(node, visit)
    }
    visit(source)
  }
  return found
}

/** A `@default {@link NAME} (value)` tag whose value is not the constant's. */
export interface DefaultTagMismatch {
  file: string
  constant: string
  documented: string
  /** The constant's value, or undefined when no such constant exists. */
  actual: unknown
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000 }

/** Whether a documented default (`5`, `'http'`, `1 s`, `19 min`) states `value`. */
export function documentsValue(documented: string, value: unknown): boolean {
  const text = documented.trim()
  const duration = /^(\d+(?:\.\d+)?)\s*(ms|s|min|h)$/.exec(text)
  if (duration !== null && typeof value === 'number')
    return Number(duration[1]) * (UNIT_MS[duration[2] as string] as number) === value
  const quoted = /^'(.*)'$/.exec(text)
  if (quoted !== null) return quoted[1] === value
  return text.replaceAll('_', '') === String(value)
}

/**
 * Every `@default {@link NAME} (value)` tag in `dir`'s sources whose value does not state `constants[NAME]` (a
 * duration in ms may be written `1 s`, `19 min`), or that names no constant. Also returns the number of tags read.
 */
export async function defaultTagMismatches(
  dir: string,
  constants: Record<string, unknown>
): Promise<{ checked: number; mismatches: DefaultTagMismatch[] }> {
  const mismatches: DefaultTagMismatch[] = []
  let checked = 0
  for (const { file, text } of await sources(dir)) {
    for (const match of text.matchAll(/@default \{@link (\w+)\} \(([^)]*)\)/g)) {
      checked++
      const [, constant, documented] = match as unknown as [string, string, string]
      const actual = constants[constant]
      if (!(constant in constants) || !documentsValue(documented, actual))
        mismatches.push({ file, constant, documented, actual })
    }
  }
  return { checked, mismatches }
}

/** The error codes listed in a README's table: the first backticked `ERR_…` cell of each row. */
export async function readmeErrorCodes(readmePath: string): Promise<string[]> {
  const readme = await readFile(readmePath, 'utf8')
  return [...readme.matchAll(/^\|\s*`(ERR_[A-Z_]+)`/gm)].map((match) => match[1] as string)
}
