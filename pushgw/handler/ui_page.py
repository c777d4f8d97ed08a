"""The fixed parts of the web UI page: CSS, the little JavaScript, the skeleton.

Everything is inline (no build step, nothing fetched from the internet); a
per-response nonce in the Content-Security-Policy lets only these run, so a
label value that slipped through escaping still could not execute.
"""

from __future__ import annotations

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --accent: #e6522c;
        --bad: #cf222e; --ok: #1a7f37; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       background: #fff; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #24292f; color: #fff; }
header h1 { font-size: 17px; margin: 0; font-weight: 600; }
header h1 span { color: var(--accent); }
header .count { color: #d0d7de; }
header .spacer { flex: 1; }
main { padding: 16px 20px; max-width: 1200px; }
#action-status { min-height: 1.4em; color: var(--muted); margin: 0 0 8px; }
.empty { color: var(--muted); padding: 24px 0; }
.group { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 12px; background: #fff; }
.group-head { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; padding: 10px 12px;
              background: var(--bg); border-bottom: 1px solid var(--line); border-radius: 6px 6px 0 0; }
.group-head .labels { flex: 1; display: flex; flex-wrap: wrap; gap: 6px; }
.label { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; padding: 2px 7px; border-radius: 10px;
         background: #ddf4ff; border: 1px solid #b6e3ff; overflow-wrap: anywhere; }
.label.job { background: #fff8c5; border-color: #eac54f; }
.label.instance { background: #dafbe1; border-color: #aceebb; }
.failed { color: #fff; background: var(--bad); border-radius: 10px; padding: 2px 8px; font-size: 12px; }
.times { display: flex; flex-wrap: wrap; gap: 4px 24px; margin: 0; padding: 8px 12px; color: var(--muted); }
.times div { display: flex; gap: 6px; }
.times dt { font-weight: 600; color: var(--fg); }
.times dd { margin: 0; }
.problem { margin: 0 12px 8px; color: var(--bad); }
details.metrics { padding: 0 12px 10px; }
details summary { cursor: pointer; color: var(--muted); padding: 4px 0; }
details.family { margin: 4px 0 4px 14px; }
details.family summary { color: var(--fg); }
.type { font-size: 11px; text-transform: uppercase; background: #eaeef2; border-radius: 4px; padding: 1px 5px; }
.help { color: var(--muted); }
.quarantined { color: var(--bad); font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 6px 14px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.value { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre; }
button { font: inherit; cursor: pointer; border-radius: 6px; padding: 3px 10px; border: 1px solid; }
button.delete, button.wipe { color: var(--bad); background: #fff; border-color: #ffcecb; }
button.delete:hover, button.wipe:hover { color: #fff; background: var(--bad); }
button:disabled { opacity: .5; cursor: default; }
#status table { margin-left: 0; }
form.filter { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px; padding: 10px 12px;
               background: var(--bg); border: 1px solid var(--line); border-radius: 6px; margin: 0 0 10px; }
form.filter input, form.filter select { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; padding: 3px 6px; }
.error { color: var(--bad); font-weight: 600; }
.summary { color: var(--muted); }
.pager { display: flex; gap: 16px; align-items: center; margin: 0 0 10px; }
.group.stale { border-color: #d4a72c; }
.stale-mark { color: #fff; background: #9a6700; border-radius: 10px; padding: 2px 8px; font-size: 12px; }
button.delete-matching { color: var(--bad); background: #fff; border-color: #ffcecb; margin-left: 8px; }
button.delete-matching:hover { color: #fff; background: var(--bad); }
footer { color: var(--muted); padding: 8px 20px 20px; font-size: 12px; }
"""

# Deleting uses the group's push path with every value @base64-encoded (set
# by the server in data-path), so any label value, "/" included, works.
# Paths are relative: the page lives at <prefix>/ or <prefix>/status.
JS = """
(function () {
  'use strict';
  var status = document.getElementById('action-status');
  function report(text) { status.textContent = text; }
  var counts = document.getElementById('counts');
  function plural(n, noun) { return n + ' ' + noun + (n === 1 ? '' : 's'); }
  // After deleting: the server's counts less what went (total and matching).
  function adjust(total, matching) {
    counts.dataset.total = total;
    counts.dataset.matching = matching;
    document.getElementById('group-count').textContent = plural(total, 'group');
    document.getElementById('total-count').textContent = total;
    document.getElementById('matching-count').textContent = matching;
    var wipe = document.querySelector('button.wipe');
    if (wipe) { wipe.disabled = total === 0; }
    var matchingButton = document.querySelector('button.delete-matching');
    if (matchingButton && matching === 0) { matchingButton.remove(); }
    else if (matchingButton) { matchingButton.textContent = 'Delete the ' + plural(matching, 'matching group'); }
    if (!document.querySelector('section.group')) {
      var empty = document.getElementById('no-groups');
      empty.textContent = total === 0 ? 'No metrics have been pushed.' : 'No groups left on this page.';
      empty.hidden = false;
    }
  }
  function removed(deleted) {
    adjust(Math.max(0, Number(counts.dataset.total) - deleted),
           Math.max(0, Number(counts.dataset.matching) - deleted));
  }
  async function send(method, path) {
    // Resolved against the page, minus any user:password@ from its address:
    // fetch refuses URLs with credentials; the browser's auth cache supplies them.
    var url = new URL(path, document.baseURI);
    url.username = '';
    url.password = '';
    var response = await fetch(url, {method: method, credentials: 'same-origin'});
    var text = (await response.text()).trim();
    return {ok: response.status === 200 || response.status === 202, text: response.status + ' ' + text,
            body: text};
  }
  document.addEventListener('click', async function (event) {
    var button = event.target.closest('button[data-action]');
    if (!button) { return; }
    if (button.dataset.action === 'delete') {
      var group = button.closest('section.group');
      if (!window.confirm('Delete all metrics of group ' + group.dataset.name + '?')) { return; }
      button.disabled = true;
      var result = await send('DELETE', button.dataset.path);
      if (result.ok) {
        group.remove();
        report('Deleted group ' + group.dataset.name + '.');
        removed(1);
      } else {
        button.disabled = false;
        report('Deleting group ' + group.dataset.name + ' failed: ' + result.text);
      }
    } else if (button.dataset.action === 'wipe') {
      if (!window.confirm('Delete the metrics of ALL groups?')) { return; }
      var wiped = await send('PUT', button.dataset.path);
      if (wiped.ok) {
        document.querySelectorAll('section.group').forEach(function (g) { g.remove(); });
        report('Deleted all groups.');
        adjust(0, 0);
        document.querySelectorAll('.delete-matching, .pager').forEach(function (e) { e.remove(); });
      } else {
        report('Wiping failed: ' + wiped.text);
      }
    } else if (button.dataset.action === 'delete-matching') {
      var what = button.textContent.replace('Delete the ', '');
      if (!window.confirm('Delete ALL ' + what + ' (every page, not only this one) of ' +
                          button.dataset.selector + '?')) { return; }
      button.disabled = true;
      var result2 = await send('DELETE', button.dataset.path);
      if (result2.ok) {
        var deleted = JSON.parse(result2.body).data.deleted;
        document.querySelectorAll('section.group').forEach(function (g) { g.remove(); });
        document.querySelectorAll('.pager').forEach(function (e) { e.remove(); });
        button.remove();
        adjust(Math.max(0, Number(counts.dataset.total) - deleted), 0);
        report('Deleted ' + plural(deleted, 'group') + ' matching ' + button.dataset.selector + '.');
      } else {
        button.disabled = false;
        report('Deleting the matching groups failed: ' + result2.text);
      }
    }
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="robots" content="noindex,nofollow">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pushgateway (pushgw)</title>
<link rel="icon" href="data:,">
<style nonce="{nonce}">{css}</style>
</head>
<body>
<header>
<h1><span>&#9650;</span> Pushgateway <small>(pushgw)</small></h1>
<span class="count" id="group-count">{group_count}</span>
<span class="spacer"></span>
{wipe}
</header>
<main>
{filter}
{error}
{summary}
<p id="action-status" role="status"></p>
{pager}
<p class="empty" id="no-groups"{empty_hidden}>{empty}</p>
{groups}
{pager}
<details id="status">
<summary>Status: flags, build and start time</summary>
{status}
</details>
</main>
<footer>Rendered {now}. Times are UTC.</footer>
<script nonce="{nonce}">{js}</script>
</body>
</html>
"""
