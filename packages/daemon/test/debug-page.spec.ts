import assert from 'node:assert/strict'
import { randomFillSync } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildImage } from '@kadmirror/oci'
import { openOciLayoutStore } from '@kadmirror/store'
import { waitFor } from '@kadmirror/test-support'
import puppeteer, { type Browser } from 'puppeteer-core'
import type { KadmirrorNode } from '../src/node.ts'
import { installed, loopbackNode } from './loopback.ts'

describe('debug page in a real browser (Debian chromium)', function () {
  this.timeout(90_000)
  const chromium = installed('chromium', 'chromium-browser')
  let dir: string
  let holder: KadmirrorNode
  let asker: KadmirrorNode
  let browser: Browser

  before(async function () {
    if (chromium === undefined) {
      console.log('      skipped: chromium is not installed (apt-get install chromium)')
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'kadmirror-debug-'))
    const store = await openOciLayoutStore({ directory: join(dir, 'a', 'layout') })
    await store.addImage(
      'registry.example.com/team/app:1.0',
      buildImage({ layers: [randomFillSync(new Uint8Array(200_000))] })
    )
    await store.close()
    holder = await loopbackNode(join(dir, 'a', 'layout'))
    asker = await loopbackNode(join(dir, 'b', 'layout'), holder)
    await waitFor(async () => (await holder.ready()) && (await asker.ready()), 20_000, 'both nodes ready')
    browser = await puppeteer.launch({
      executablePath: chromium as string,
      args: ['--no-sandbox', '--headless=new']
    })
  })

  after(async () => {
    await browser?.close()
    await Promise.all([asker?.close(), holder?.close()])
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('renders the peer table and, offline, loads nothing but the node’s own URLs', async () => {
    const page = await browser.newPage()
    const requested: string[] = []
    page.on('request', (request) => {
      requested.push(request.url())
    })
    await page.goto(`${asker.metricsUrl}/debug/web/`, { waitUntil: 'load' })
    await page.waitForFunction(
      `document.getElementById('peers')?.textContent?.includes(${JSON.stringify(holder.router.peerId)})`,
      { timeout: 20_000 }
    )
    assert.equal(await page.$eval('#peer-id', (e) => e.textContent), asker.router.peerId)
    assert.ok(
      requested.every((url) => url.startsWith(asker.metricsUrl as string)),
      requested.join('\n')
    )
    await page.close()
  })

  it('lists the images a node holds', async () => {
    const page = await browser.newPage()
    await page.goto(`${holder.metricsUrl}/debug/web/`)
    await page.waitForFunction(
      "document.getElementById('images')?.textContent?.includes('registry.example.com/team/app:1.0')",
      {
        timeout: 20_000
      }
    )
    await page.close()
  })

  it('measures an image: the providers found with their times, and every request of the pull from a peer', async () => {
    const page = await browser.newPage()
    await page.goto(`${asker.metricsUrl}/debug/web/`)
    await page.type('#image', 'registry.example.com/team/app:1.0')
    await page.click('#measure-button')
    await page.waitForSelector('#measure-result:not([hidden])', { timeout: 30_000 })
    const providers = await page.$$eval('#providers tr', (rows) =>
      rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? ''))
    )
    assert.equal(providers[0]?.[0], holder.router.peerId)
    assert.match(providers[0]?.[2] ?? '', /^\d+\.\d ms$/)
    const requests = await page.$$eval('#requests tr', (rows) =>
      rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? ''))
    )
    // HEAD of the tag, the manifest, its config and its layer.
    assert.equal(requests.length, 4, JSON.stringify(requests))
    for (const row of requests) {
      assert.equal(row[2], '200')
      assert.equal(row[3], 'peer')
      assert.match(row[6] ?? '', /^\d+\.\d ms$/)
    }
    assert.match(await page.$eval('#measure-status', (e) => e.textContent ?? ''), /4 from peers \(ok\)/)
    await page.close()
  })

  it('says in the page why a measure of something that is not an image failed', async () => {
    const page = await browser.newPage()
    await page.goto(`${asker.metricsUrl}/debug/web/`)
    await page.type('#image', 'Not An Image!!')
    await page.click('#measure-button')
    await page.waitForSelector('#measure-status .bad', { timeout: 10_000 })
    await page.close()
  })
})
