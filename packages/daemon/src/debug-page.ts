/**
 * The debug page's HTML: one self-contained document (inline style and script, no CDN: it works offline) that
 * reads `api/status` every two seconds and posts the measure form to `api/measure`.
 */

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.6rem; }
table { border-collapse: collapse; width: 100%; margin-top: .4rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #dde1e8; vertical-align: top; }
th { background: #f2f4f8; } code, .mono { font-family: ui-monospace, monospace; font-size: 12.5px; }
.muted { color: #6a7385; } .ok { color: #137333; } .bad { color: #b3261e; }
form { display: flex; gap: .5rem; } input { flex: 1; padding: .35rem; font-family: ui-monospace, monospace; }
button { padding: .35rem .9rem; }
`

const SCRIPT = `
const $ = (id) => document.getElementById(id)
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
const rows = (id, items, cells, empty) => {
  $(id).innerHTML = items.length === 0 ? '<tr><td class="muted" colspan="9">' + empty + '</td></tr>'
    : items.map((item) => '<tr>' + cells(item).map((c) => '<td>' + c + '</td>').join('') + '</tr>').join('')
}
const ms = (v) => (Math.round(v * 10) / 10).toFixed(1) + ' ms'
const time = (at) => new Date(at).toLocaleTimeString()
async function refresh() {
  try {
    const s = await (await fetch('api/status')).json()
    $('peer-id').textContent = s.peerId
    $('addresses').textContent = s.addresses.join(' ')
    $('last-success').textContent = s.lastMirrorSuccess ? new Date(s.lastMirrorSuccess).toLocaleString() : 'never'
    rows('peers', s.peers, (p) => ['<span class="mono">' + esc(p.id) + '</span>', '<span class="mono">' + esc(p.addresses.join(' ')) + '</span>'], 'no peers yet')
    rows('images', s.images, (i) => ['<span class="mono">' + esc(i.reference) + '</span>', '<span class="mono">' + esc(i.digest) + '</span>'], 'no images')
    rows('recent', s.recent, (r) => [esc(time(r.at)), esc(r.method), '<span class="mono">' + esc(r.path) + '</span>', esc(r.status), esc(r.source), '<span class="mono">' + esc(r.peer) + '</span>', esc(ms(r.durationMs))], 'no requests yet')
    $('status').textContent = 'updated ' + new Date().toLocaleTimeString()
  } catch (err) {
    $('status').textContent = 'cannot reach the node: ' + err
  }
}
async function measure(event) {
  event.preventDefault()
  $('measure-status').textContent = 'measuring…'
  $('measure-result').hidden = true
  const res = await fetch('api/measure', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: $('image').value }) })
  const m = await res.json()
  if (!res.ok) { $('measure-status').innerHTML = '<span class="bad">' + esc(m.error) + '</span>'; return }
  $('measure-status').innerHTML = 'resolved <code>' + esc(m.resolve.key) + '</code> in ' + esc(ms(m.resolve.ms)) + '; pulled ' + m.pull.requests.length + ' requests, ' + m.pull.bytes + ' bytes in ' + esc(ms(m.pull.ms)) + ', ' + m.pull.fromPeers + ' from peers (<span class="' + (m.pull.status === 'ok' ? 'ok' : 'bad') + '">' + m.pull.status + '</span>)'
  rows('providers', m.resolve.providers, (p) => ['<span class="mono">' + esc(p.id) + '</span>', esc(p.registryUrl), esc(ms(p.ms))], 'no provider found')
  rows('requests', m.pull.requests, (r) => [esc(r.method), '<span class="mono">' + esc(r.path) + '</span>', esc(r.status), esc(r.source), '<span class="mono">' + esc(r.peer) + '</span>', esc(r.bytes), esc(ms(r.ms))], 'no requests')
  $('measure-result').hidden = false
}
$('measure-form').addEventListener('submit', (e) => { measure(e).catch((err) => { $('measure-status').textContent = String(err) }) })
refresh()
setInterval(refresh, 2000)
`

/** The debug page. */
export const DEBUG_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kadmirror debug</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style>
</head>
<body>
<h1>kadmirror node</h1>
<p>Peer id <code id="peer-id">…</code><br>Addresses <code id="addresses">…</code><br>Last mirror success: <span id="last-success">…</span><br><span class="muted" id="status"></span></p>
<h2>Peers</h2>
<table><thead><tr><th>peer id</th><th>addresses</th></tr></thead><tbody id="peers"></tbody></table>
<h2>Images</h2>
<table><thead><tr><th>reference</th><th>digest</th></tr></thead><tbody id="images"></tbody></table>
<h2>Measure</h2>
<form id="measure-form"><input id="image" name="image" placeholder="docker.io/library/nginx:1.27" required><button id="measure-button" type="submit">Measure</button></form>
<p id="measure-status" class="muted">Resolves an image through the DHT and pulls it through this node's mirror.</p>
<div id="measure-result" hidden>
<table><thead><tr><th>provider</th><th>registry</th><th>found after</th></tr></thead><tbody id="providers"></tbody></table>
<table><thead><tr><th>method</th><th>path</th><th>status</th><th>source</th><th>peer</th><th>bytes</th><th>duration</th></tr></thead><tbody id="requests"></tbody></table>
</div>
<h2>Recent requests</h2>
<table><thead><tr><th>time</th><th>method</th><th>path</th><th>status</th><th>source</th><th>peer</th><th>duration</th></tr></thead><tbody id="recent"></tbody></table>
<script>${SCRIPT}</script>
</body>
</html>
`
