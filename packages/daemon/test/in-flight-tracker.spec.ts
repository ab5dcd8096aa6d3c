import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Ingest } from '@kadmirror/containerd'
import type { Digest } from '@kadmirror/oci'
import type { ContentInfo } from '@kadmirror/store'
import { IN_FLIGHT_FIND_POLL_MS, IN_FLIGHT_MAX_FOLLOWED } from '../src/constants.ts'
import { InFlightTracker } from '../src/in-flight-tracker.ts'

const digestOf = (n: number): Digest => `sha256:${n.toString(16).padStart(64, '0')}` as Digest

/** A tracker over fake parts: `ingests` is what containerd is downloading, `committed` what its store holds. */
function trackerOver(findTimeoutMs = 5000) {
  const ingests: Ingest[] = []
  const committed = new Set<Digest>()
  const advertised: Digest[] = []
  const counts = { lists: 0 }
  const tracker = new InFlightTracker({
    ingests: {
      list: async () => {
        counts.lists++
        return [...ingests]
      }
    },
    router: {
      advertise: async (keys) => void advertised.push(...(keys as Digest[])),
      withdraw: async () => {}
    },
    store: {
      stat: async (digest) => (committed.has(digest) ? ({ digest, size: 1 } as ContentInfo) : undefined)
    },
    log: { debug: () => {}, warn: () => {} },
    findTimeoutMs
  })
  const download = (digest: Digest, totalBytes: number): void =>
    void ingests.push({
      digest,
      ref: `k8s.io/1/layer-${digest}`,
      dataPath: `/ingest/${digest}/data`,
      totalBytes
    })
  return { tracker, download, committed, advertised, counts }
}

/** Waits until `check` holds, polling every few ms, for at most 2 s. */
async function until(check: () => boolean): Promise<void> {
  for (let waited = 0; !check(); waited += 5) {
    assert.ok(waited < 2000, 'condition not reached within 2 s')
    await sleep(5)
  }
}

describe('in-flight tracker (containerd downloads served while they arrive)', () => {
  it('reads ingest/ once per poll however many digests are looked for', async () => {
    const { tracker, counts } = trackerOver()
    try {
      for (let i = 0; i < 100; i++) tracker.follow(digestOf(i))
      await sleep(IN_FLIGHT_FIND_POLL_MS * 4)
      assert.equal(tracker.followed(), 100)
      // One listing per poll (4 polls, give or take one for timer jitter) — not one per digest per poll.
      assert.ok(counts.lists >= 2 && counts.lists <= 6, `${counts.lists} listings`)
    } finally {
      tracker.close()
    }
  })

  it('serves and advertises a download as soon as it appears in ingest/', async () => {
    const { tracker, download, advertised } = trackerOver()
    try {
      tracker.follow(digestOf(1))
      await sleep(IN_FLIGHT_FIND_POLL_MS * 2)
      assert.equal(await tracker.find(digestOf(1)), undefined)
      download(digestOf(1), 4096)
      await until(() => advertised.includes(digestOf(1)))
      assert.deepEqual(await tracker.find(digestOf(1)), { path: `/ingest/${digestOf(1)}/data`, size: 4096 })
      assert.equal(tracker.followed(), 0)
    } finally {
      tracker.close()
    }
  })

  it('advertises a blob committed before its download was found, without serving a file', async () => {
    const { tracker, committed, advertised } = trackerOver()
    try {
      committed.add(digestOf(2))
      tracker.follow(digestOf(2))
      await until(() => advertised.includes(digestOf(2)))
      assert.equal(await tracker.find(digestOf(2)), undefined)
      assert.equal(tracker.followed(), 0)
    } finally {
      tracker.close()
    }
  })

  it('gives a digest up after its find time, and then stops reading ingest/', async () => {
    const { tracker, counts, advertised } = trackerOver(100)
    try {
      tracker.follow(digestOf(3))
      await until(() => tracker.followed() === 0)
      await sleep(IN_FLIGHT_FIND_POLL_MS * 2)
      const lists = counts.lists
      await sleep(IN_FLIGHT_FIND_POLL_MS * 4)
      assert.equal(counts.lists, lists)
      assert.deepEqual(advertised, [])
    } finally {
      tracker.close()
    }
  })

  it(`looks for at most ${IN_FLIGHT_MAX_FOLLOWED} digests at once, giving up the oldest`, async () => {
    const { tracker, download, advertised } = trackerOver()
    try {
      for (let i = 0; i <= IN_FLIGHT_MAX_FOLLOWED; i++) tracker.follow(digestOf(i))
      assert.equal(tracker.followed(), IN_FLIGHT_MAX_FOLLOWED)
      download(digestOf(0), 1)
      download(digestOf(IN_FLIGHT_MAX_FOLLOWED), 1)
      await until(() => advertised.includes(digestOf(IN_FLIGHT_MAX_FOLLOWED)))
      await sleep(IN_FLIGHT_FIND_POLL_MS * 2)
      assert.equal(await tracker.find(digestOf(0)), undefined)
    } finally {
      tracker.close()
    }
  })
})
