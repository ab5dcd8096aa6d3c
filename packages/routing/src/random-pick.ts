/** Picking at random without repeats. */

/**
 * Up to `count` distinct items of `items` picked at random (a partial Fisher–Yates shuffle: it reorders `items`).
 * `random` gives numbers in [0, 1): Math.random by default, a seeded source in a simulator.
 */
export function pickRandom<T>(items: T[], count: number, random: () => number = Math.random): T[] {
  const n = Math.min(count, items.length)
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (items.length - i))
    ;[items[i], items[j]] = [items[j] as T, items[i] as T]
  }
  return items.slice(0, n)
}
