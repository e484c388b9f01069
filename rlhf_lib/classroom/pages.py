"""The two pages. The student page is static: its script talks to the JSON API and puts every text from
the server on the page with textContent, never as markup. The teacher page is built on the server,
and every name or text in it passes through html.escape."""

from __future__ import annotations

import math
from html import escape
from urllib.parse import quote

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #1d2330; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.4rem; margin: 0 0 16px; }
h2 { font-size: 1.1rem; margin: 28px 0 8px; }
.card { background: white; border: 1px solid #d8dce3; border-radius: 8px; padding: 16px; margin-bottom: 12px; }
.prompt { font-size: 1.2rem; }
.pair { display: flex; gap: 12px; }
.pair .card { flex: 1; font-size: 1.1rem; min-height: 80px; }
.pair .tag { font-weight: 600; color: #5b6475; display: block; margin-bottom: 6px; }
button { font-size: 1rem; padding: 8px 14px; border-radius: 6px; border: 1px solid #aab2c0; background: white;
         cursor: pointer; }
button:hover { background: #eef1f6; }
button.main { background: #2f5fd0; color: white; border-color: #2f5fd0; }
kbd { font-family: ui-monospace, monospace; background: #eef1f6; border: 1px solid #ccd2dc; border-radius: 4px;
      padding: 0 4px; font-size: 0.85rem; }
.muted { color: #5b6475; }
.error { color: #b42318; }
table { border-collapse: collapse; background: white; width: 100%; }
th, td { border: 1px solid #d8dce3; padding: 6px 8px; text-align: left; font-size: 0.95rem; }
th { background: #eef1f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
input[type=text] { font-size: 1rem; padding: 8px; border-radius: 6px; border: 1px solid #aab2c0; width: 260px; }
"""

STUDENT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Label pairs</title><style>""" + STYLE + """</style></head>
<body><main>
<h1>Which completion is better?</h1>
<form id="join" class="card" hidden>
  <p>Type your name to start. Your teacher sees it next to your labels.</p>
  <input id="name" type="text" maxlength="40" autocomplete="off" placeholder="your name" aria-label="your name">
  <button class="main" type="submit">Start</button>
  <p id="join-error" class="error"></p>
</form>
<section id="work" hidden>
  <p class="muted"><span id="who"></span> &middot; <b id="count">0</b> labeled &middot;
     <a href="#" id="rename">change name</a></p>
  <div class="card prompt"><span class="muted">Prompt:</span> <span id="prompt"></span></div>
  <div class="pair">
    <div class="card"><span class="tag">A</span><span id="a"></span></div>
    <div class="card"><span class="tag">B</span><span id="b"></span></div>
  </div>
  <p>
    <button data-choice="a">A is better <kbd>a</kbd></button>
    <button data-choice="b">B is better <kbd>b</kbd></button>
    <button data-choice="tie">Tie <kbd>t</kbd></button>
    <button data-choice="skip">Skip <kbd>s</kbd></button>
    <button id="undo">Undo <kbd>u</kbd></button>
  </p>
  <p id="status" class="muted">Keys: a, b, t (tie), s (skip), u (undo).</p>
</section>
<section id="done" class="card" hidden><p id="done-text"></p></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const KEYS = {a: "a", b: "b", t: "tie", s: "skip"};
let name = localStorage.getItem("rlhf-classroom-name") || "";
let pair = null, busy = false;

function newId() {
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12) +
    Math.random().toString(36).slice(2, 8);
}
async function call(method, url, body) {
  // retries on a lost connection; a label carries its label_id, so a retry is stored once
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await fetch(url, {method, headers: body ? {"content-type": "application/json"} : {},
                                  body: body ? JSON.stringify(body) : undefined});
      const data = await r.json();
      if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
      return data;
    } catch (err) {
      if (!(err instanceof TypeError) || attempt >= 20) throw err;  // TypeError: no answer from the server
      $("status").textContent = "The server does not answer; trying again...";
      await new Promise((done) => setTimeout(done, 500 + 250 * attempt));
    }
  }
}
function show(data) {
  $("count").textContent = data.labeled;
  if (data.pair_id === null) {
    pair = null; $("work").hidden = true; $("done").hidden = false;
    $("done-text").textContent = data.message + " (" + data.labeled + " labels).";
    return;
  }
  pair = data;
  $("prompt").textContent = data.prompt;
  $("a").textContent = data.completion_a;
  $("b").textContent = data.completion_b;
}
async function act(work) {
  if (busy) return;
  busy = true;
  try { await work(); } catch (err) {
    $("status").textContent = err.message; $("status").className = "error"; busy = false; return;
  }
  $("status").className = "muted";
  busy = false;
}
async function next() {
  show(await call("GET", "/api/pair?annotator=" + encodeURIComponent(name)));
}
function choose(choice) {
  return act(async () => {
    if (!pair) return;
    const r = await call("POST", "/api/label", {pair_id: pair.pair_id, annotator: name, choice, label_id: newId()});
    await next();
    $("status").textContent = "Saved: " + choice + " for pair " + r.pair_id + ".";
  });
}
function undo() {
  return act(async () => {
    const r = await call("POST", "/api/undo", {annotator: name});
    $("work").hidden = false; $("done").hidden = true;
    await next();
    $("status").textContent = "Undone: your label of pair " + r.pair_id + ". Judge it again.";
  });
}
function start() {
  $("join").hidden = true; $("work").hidden = false;
  $("who").textContent = name;
  act(next);
}
$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const typed = $("name").value.trim();
  if (!typed) { $("join-error").textContent = "Type a name first."; return; }
  name = typed; localStorage.setItem("rlhf-classroom-name", name);
  start();
});
$("rename").addEventListener("click", (e) => {
  e.preventDefault(); localStorage.removeItem("rlhf-classroom-name"); location.reload();
});
document.querySelectorAll("button[data-choice]").forEach(
  (b) => b.addEventListener("click", () => choose(b.dataset.choice)));
$("undo").addEventListener("click", undo);
document.addEventListener("keydown", (e) => {
  if (!name || ($("work").hidden && e.key !== "u")) return;
  if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.toLowerCase();
  if (KEYS[key]) { e.preventDefault(); choose(KEYS[key]); }
  else if (key === "u") { e.preventDefault(); undo(); }
});
if (name) start(); else { $("join").hidden = false; $("name").focus(); }
</script>
</body></html>
"""


def refused(message: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Teacher page</title>"
            f"<style>{STYLE}</style></head><body><main><h1>Teacher page</h1>"
            f"<p class='card error'>{escape(message)}</p></main></body></html>")


def _number(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _bars(counts: list[int], width: int = 220, height: int = 28) -> str:
    """Labels per minute as a small bar chart (inline SVG)."""
    if not counts:
        return ""
    top, step = max(max(counts), 1), width / len(counts)
    bars = "".join(f"<rect x='{i * step:.1f}' y='{height - c / top * height:.1f}' width='{max(step - 1, 1):.1f}' "
                   f"height='{c / top * height:.1f}' fill='#2f5fd0'><title>minute {i}: {c}</title></rect>"
                   for i, c in enumerate(counts) if c)
    return f"<svg width='{width}' height='{height}' role='img' aria-label='labels per minute'>{bars}</svg>"


def teacher(report: dict, n_pairs: int, token: str, train_state: dict | None) -> str:
    """The teacher page for `class_report(...)` figures; `token` goes into the links it makes."""
    q = quote(token)
    rows = "".join(
        f"<tr><td class='student'>{escape(s['name'])}</td><td class='num'>{s['labels']}</td>"
        f"<td class='num'>{s['choices']['a']} / {s['choices']['b']} / "
        f"{s['choices']['tie']} / {s['choices']['skip']}</td>"
        f"<td class='num'>{_number(s['gold_agreement'])} ({s['gold_agree']}/{s['gold_compared']})</td>"
        f"<td title='{escape(s['last'])}'>{escape(s['last'][11:19])}</td><td>{_bars(s['per_minute'])}</td></tr>"
        for s in report["students"])
    agreement = "".join(
        f"<tr><td>{escape(p['a'])}</td><td>{escape(p['b'])}</td><td class='num'>{p['shared']}</td>"
        f"<td class='num'>{_number(p['agreement'])}</td><td class='num kappa'>{_number(p['kappa'])}</td></tr>"
        for p in report["pairs_of_students"])
    if train_state is None:
        training = ""
    else:
        log = escape(train_state.get("log_tail", ""))
        training = (f"<h2>Train the class's reward model and policy</h2><div class='card'>"
                    f"<form method='post' action='/api/train?token={q}' onsubmit=\"event.preventDefault(); "
                    f"fetch(this.action, {{method: 'POST'}}).then(() => location.reload())\">"
                    f"<button class='main' type='submit'>Train now</button> "
                    f"<span class='muted'>state: {escape(train_state['state'])}; "
                    f"folder: {escape(str(train_state.get('out') or '-'))}</span></form>"
                    f"<pre>{log}</pre></div>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>Class labels</title><style>{STYLE}</style></head>
<body><main>
<h1>Class labels</h1>
<p class="card">{report['n_labels']} labels from {report['n_students']} students on {n_pairs} pairs.
Krippendorff's alpha (all students, {report['alpha_units']} pairs judged by two or more):
<b id="alpha">{_number(report['alpha'])}</b>.
<a href="/api/export?token={q}">Download the labels (JSONL)</a></p>
<h2>Students</h2>
<table id="students"><tr><th>student</th><th>labels</th><th>a / b / tie / skip</th>
<th>agreement with gold taste</th><th>last label (UTC)</th><th>labels per minute</th></tr>{rows}</table>
<h2>Agreement between students on shared pairs</h2>
<p class="muted">Cohen's kappa: 1 is perfect agreement, 0 is what chance gives, n/a when chance explains
everything. Skips are left out.</p>
<table id="agreement"><tr><th>student</th><th>student</th><th>pairs both judged</th><th>raw agreement</th>
<th>Cohen's kappa</th></tr>{agreement}</table>
{training}
<p class="muted">This page refreshes every 10 seconds.</p>
</main></body></html>
"""
