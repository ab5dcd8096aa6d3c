// The ContentStore conformance suite against a real containerd, reading content both ways.
import { contentStoreConformance } from '@kadmirror/store/conformance'
import { type ContainerdStore, openContainerdStore } from '../src/index.ts'
import { type ContainerdProcess, containerdUnavailable, startContainerd } from './containerd-process.ts'

const why = containerdUnavailable()
if (why !== undefined) {
  describe('ContainerdStore conformance', () => {
    it(`is skipped: ${why}`, function () {
      console.log(`    skipped: ${why}`)
      this.skip()
    })
  })
} else {
  for (const read of ['grpc', 'file'] as const) {
    describe(`ContainerdStore (${read} reads)`, function () {
      this.timeout(30_000)
      let containerd: ContainerdProcess
      let namespaces = 0

      before(async () => {
        containerd = await startContainerd()
      })

      after(async () => {
        await containerd?.stop()
      })

      contentStoreConformance(`ContainerdStore, ${read} reads`, {
        async setup() {
          const namespace = `conformance-${read}-${++namespaces}`
          const store: ContainerdStore = await openContainerdStore({
            address: containerd.socket,
            namespace,
            contentDir: containerd.contentDir,
            read,
            eventDebounceMs: 10
          })
          // containerd reports changes by events, a moment after ctr returns; the harness waits for the store to
          // have listed again so each test sees its change at once (events alone are tested in store.spec.ts).
          return {
            store,
            async addImage(reference, image) {
              await containerd.importImage(namespace, reference, image)
              await store.refresh()
            },
            async removeImage(reference) {
              await containerd.removeImage(namespace, reference)
              await store.refresh()
            }
          }
        },
        async teardown(harness) {
          await harness.store.close()
        },
        eventTimeoutMs: 10_000
      })
    })
  }
}
