// The pages' own style and script. The script reads the JSON the writer embeds (id "gradformer-data") and builds
// everything from it; it fetches nothing, so the page's Content-Security-Policy can forbid every request.
#include "models/html_pages.h"

namespace gradformer::models::html_pages {

const char* const common_style = R"page(
body { font-family: system-ui, sans-serif; margin: 16px 24px; color: #1b1b1b; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 16px 0 6px; }
.subtitle { color: #555; margin: 0 0 12px; font-size: 13px; }
table.settings { border-collapse: collapse; font-size: 13px; }
table.settings td, table.settings th { border-bottom: 1px solid #e4e4e4; padding: 2px 10px 2px 0; text-align: left;
  vertical-align: top; }
table.settings th { font-weight: 600; color: #333; }
label { font-size: 14px; margin-right: 14px; }
select { font-size: 14px; }
)page";

const char* const attention_style = R"page(
#controls { margin: 8px 0 10px; }
#source-line { font-size: 14px; margin: 6px 0; }
#view { display: flex; gap: 24px; align-items: flex-start; }
#matrix { border-collapse: collapse; font-size: 12px; }
#matrix td { width: 22px; height: 22px; padding: 0; border: 1px solid #fff; cursor: crosshair; }
#matrix th { font-weight: normal; padding: 0 4px; cursor: pointer; white-space: nowrap; }
#matrix th.col { height: 90px; vertical-align: bottom; }
#matrix th.col span { display: inline-block; writing-mode: vertical-rl; transform: rotate(180deg); }
#matrix th.row { text-align: right; }
#matrix .lit { outline: 2px solid #d62728; outline-offset: -2px; }
#matrix th.lit { background: #ffe9a8; outline: none; }
#matrix th.pinned { background: #ffd24d; }
#caption { font-size: 13px; color: #555; margin: 4px 0; }
aside { min-width: 240px; font-size: 13px; }
#legend-bar { height: 14px; width: 220px; border: 1px solid #999; }
#legend-ticks { position: relative; width: 220px; height: 16px; font-size: 11px; }
#legend-ticks span { position: absolute; transform: translateX(-50%); }
#info table { border-collapse: collapse; margin-top: 4px; }
#info td { padding: 1px 6px 1px 0; }
#info .bar { display: inline-block; height: 9px; background: #2b6cb0; }
#n-best { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
#n-best td, #n-best th { border-bottom: 1px solid #e4e4e4; padding: 2px 10px 2px 0; text-align: left; }
)page";

const char* const attention_body = R"page(<h1 id="title"></h1>
<p class="subtitle" id="model"></p>
<div id="controls">
<label>Sentence <select id="sentence"></select></label>
<label>Attention <select id="kind"></select></label>
<label>Layer <select id="layer"></select></label>
<label>Head <select id="head"></select></label>
</div>
<div id="source-line"></div>
<table id="n-best" hidden></table>
<div id="view">
<div><div id="caption"></div><table id="matrix"></table></div>
<aside>
<div>Attention weight</div>
<div id="legend-bar"></div>
<div id="legend-ticks"></div>
<div id="info"></div>
</aside>
</div>)page";

const char* const attention_script = R"page("use strict";
const data = JSON.parse(document.getElementById("gradformer-data").textContent);
const $ = (id) => document.getElementById(id);
// Rows are queries, columns keys: which tokens label them for each kind of attention.
const axes = {
  "encoder self": ["source_tokens", "source_tokens", "source token", "source token"],
  "decoder self": ["target_outputs", "target_inputs", "target position (predicting)", "target input"],
  "cross": ["target_outputs", "source_tokens", "target token", "source token"],
};
const kindOrder = ["encoder self", "decoder self", "cross"];
let pinned = null;  // {row} or {col} or {row, col}: what a click fixed

// White to dark blue: 0 is the page's background, 1 the darkest.
function colour(v) {
  const t = Math.max(0, Math.min(1, v));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 8)}, ${mix(255, 48)}, ${mix(255, 107)})`;
}

function fill(select, labels, values) {
  const old = select.value;
  select.replaceChildren(...labels.map((label, i) => {
    const option = document.createElement("option");
    option.value = values ? values[i] : String(i);
    option.textContent = label;
    return option;
  }));
  if ([...select.options].some((o) => o.value === old)) select.value = old;
}

const sentence = () => data.sentences[Number($("sentence").value)];

function current() {
  const s = sentence(), kind = $("kind").value;
  const [rowKey, colKey, rowName, colName] = axes[kind];
  const weights = s.attention[kind][Number($("layer").value)][Number($("head").value)];
  return { s, kind, weights, rows: s[rowKey], cols: s[colKey], rowName, colName };
}

function onSentence() {
  const s = sentence();
  fill($("kind"), kindOrder.filter((k) => k in s.attention), kindOrder.filter((k) => k in s.attention));
  $("source-line").textContent = `Source (line ${s.line}): ${s.source}    \u2192    ${s.n_best.length ? s.n_best[0].text : ""}`;
  const table = $("n-best");
  table.hidden = !data.show_n_best;
  if (data.show_n_best) {
    table.replaceChildren();
    const head = table.insertRow();
    for (const name of ["rank", "hypothesis", "F0 (sum log p)", "score"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    }
    s.n_best.forEach((h, i) => {
      const tr = table.insertRow();
      for (const v of [String(i + 1), h.text, h.log_prob.toFixed(4), h.score.toFixed(4)]) tr.insertCell().textContent = v;
    });
  }
  onKind();
}

function onKind() {
  const layers = sentence().attention[$("kind").value];
  fill($("layer"), layers.map((_, i) => `layer ${i}`));
  onLayer();
}

function onLayer() {
  const heads = sentence().attention[$("kind").value][Number($("layer").value)];
  fill($("head"), heads.map((_, i) => `head ${i}`));
  draw();
}

function draw() {
  const { weights, rows, cols, kind } = current();
  const table = $("matrix");
  table.replaceChildren();
  const head = table.insertRow();
  head.appendChild(document.createElement("th"));
  cols.forEach((token, k) => {
    const th = document.createElement("th");
    th.className = "col";
    th.dataset.col = k;
    const span = document.createElement("span");
    span.textContent = token;
    th.appendChild(span);
    head.appendChild(th);
  });
  weights.forEach((row, q) => {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.className = "row";
    th.dataset.row = q;
    th.textContent = rows[q] ?? "";
    tr.appendChild(th);
    row.forEach((v, k) => {
      const td = tr.insertCell();
      td.dataset.row = q;
      td.dataset.col = k;
      td.dataset.weight = v;
      td.style.background = colour(v);
      td.title = `${rows[q] ?? ""} \u2192 ${cols[k] ?? ""}: ${v.toFixed(4)}`;
    });
  });
  $("caption").textContent = `${kind} attention, layer ${$("layer").value}, head ${$("head").value}: ` +
    `rows ${axes[kind][2]}s, columns ${axes[kind][3]}s; each row sums to 1`;
  pinned = null;
  show(null);
}

// What a hover or click points at: a row header, a column header or a cell.
function pointed(element) {
  const target = element.closest("[data-row], [data-col]");
  if (!target || !$("matrix").contains(target)) return null;
  const at = {};
  if (target.dataset.row !== undefined) at.row = Number(target.dataset.row);
  if (target.dataset.col !== undefined) at.col = Number(target.dataset.col);
  return at;
}

function show(at) {
  const table = $("matrix");
  for (const e of table.querySelectorAll(".lit, .pinned")) e.classList.remove("lit", "pinned");
  const info = $("info");
  info.replaceChildren();
  if (!at) {
    info.textContent = "Hover over (or click, to keep it) a token to see its weights, or a cell for one weight.";
    return;
  }
  const { weights, rows, cols, rowName, colName } = current();
  const mark = (selector) => { for (const e of table.querySelectorAll(selector)) e.classList.add("lit"); };
  if (at.row !== undefined) mark(`[data-row="${at.row}"]`);
  if (at.col !== undefined) mark(`[data-col="${at.col}"]`);
  if (pinned) {
    if (pinned.row !== undefined && pinned.col === undefined) table.querySelector(`th[data-row="${pinned.row}"]`).classList.add("pinned");
    if (pinned.col !== undefined && pinned.row === undefined) table.querySelector(`th[data-col="${pinned.col}"]`).classList.add("pinned");
  }
  const heading = document.createElement("div");
  let entries;
  if (at.row !== undefined && at.col !== undefined) {
    heading.textContent = `${rowName} "${rows[at.row]}" \u2192 ${colName} "${cols[at.col]}": ${weights[at.row][at.col].toFixed(4)}`;
    entries = [];
  } else if (at.row !== undefined) {
    heading.textContent = `${rowName} "${rows[at.row]}" attends to:`;
    entries = weights[at.row].map((v, k) => [cols[k], v]);
  } else {
    heading.textContent = `${colName} "${cols[at.col]}" is attended by:`;
    entries = weights.map((row, q) => [rows[q], row[at.col]]);
  }
  heading.id = "info-heading";
  info.appendChild(heading);
  if (!entries.length) return;
  const list = document.createElement("table");
  list.id = "info-weights";
  for (const [token, v] of entries.sort((a, b) => b[1] - a[1])) {
    const tr = list.insertRow();
    tr.insertCell().textContent = token;
    tr.insertCell().textContent = v.toFixed(4);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(120 * v)}px`;
    tr.insertCell().appendChild(bar);
  }
  info.appendChild(list);
}

function legend() {
  const stops = [];
  for (let i = 0; i <= 10; ++i) stops.push(`${colour(i / 10)} ${i * 10}%`);
  $("legend-bar").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  const ticks = $("legend-ticks");
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    const span = document.createElement("span");
    span.style.left = `${v * 100}%`;
    span.textContent = String(v);
    ticks.appendChild(span);
  }
}

$("title").textContent = `Attention: ${data.title}`;
const model = data.model || {};
$("model").textContent = Object.entries(model).filter(([, v]) => typeof v !== "object")
  .map(([k, v]) => `${k} ${v}`).join(", ");
fill($("sentence"), data.sentences.map((s) => `${s.line}: ${s.source.length > 60 ? s.source.slice(0, 57) + "..." : s.source}`));
$("sentence").addEventListener("change", onSentence);
$("kind").addEventListener("change", onKind);
$("layer").addEventListener("change", onLayer);
$("head").addEventListener("change", draw);
const matrix = $("matrix");
matrix.addEventListener("mouseover", (e) => { const at = pointed(e.target); if (at) show(at); });
matrix.addEventListener("mouseleave", () => show(pinned));
matrix.addEventListener("click", (e) => {
  const at = pointed(e.target);
  pinned = at && JSON.stringify(at) !== JSON.stringify(pinned) ? at : null;
  show(pinned ?? at);
});
legend();
onSentence();
// The cross-attention of the last layer is where alignments show best: the view starts there.
if ([...$("kind").options].some((o) => o.value === "cross")) {
  $("kind").value = "cross";
  onKind();
  $("layer").value = String($("layer").options.length - 1);
  onLayer();
}
)page";

const char* const training_style = R"page(
#charts { display: flex; flex-wrap: wrap; gap: 12px 28px; }
.chart { position: relative; }
.chart h2 { margin: 8px 0 2px; }
.chart svg { font-size: 11px; }
.chart .grid { stroke: #e6e6e6; }
.chart .axis { stroke: #444; }
.chart .empty { fill: #888; font-size: 13px; }
.tip { position: absolute; pointer-events: none; background: rgba(255, 255, 255, 0.95); border: 1px solid #999;
  padding: 3px 6px; font-size: 12px; white-space: nowrap; display: none; }
.tables { display: flex; flex-wrap: wrap; gap: 8px 40px; }
)page";

const char* const training_body = R"page(<h1 id="title"></h1>
<p class="subtitle" id="subtitle"></p>
<label><input type="checkbox" id="log-scale"> log scale (values axes)</label>
<div id="charts"></div>
<div class="tables">
<div><h2>Best checkpoint</h2><table class="settings" id="best"></table></div>
<div><h2>Machine</h2><table class="settings" id="machine"></table></div>
<div><h2>Configuration</h2><table class="settings" id="config"></table></div>
</div>)page";

const char* const training_script = R"page("use strict";
const data = JSON.parse(document.getElementById("gradformer-data").textContent);
const $ = (id) => document.getElementById(id);
const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
const W = 540, H = 250, L = 64, R = 16, T = 12, B = 34;
const svgNS = "http://www.w3.org/2000/svg";

const exp = (curve, label) => ({ label, points: curve.points.map(([s, v]) => [s, v === null ? null : Math.exp(v)]) });
const charts = [
  { id: "loss", title: "Loss per target token", series: [data.train_nll, data.valid_nll, data.smoothed_loss] },
  { id: "perplexity", title: "Perplexity", series: [exp(data.train_nll, "train perplexity"), exp(data.valid_nll, "valid perplexity")] },
  { id: "scores", title: "Validation BLEU and chrF", series: [data.bleu, data.chrf] },
  { id: "learning-rate", title: "Learning rate", series: [data.learning_rate] },
  { id: "tokens-per-second", title: "Tokens per second (training)", series: [data.tokens_per_second] },
];

// Every chart spans the same steps, so that their curves line up one above the other.
const stepRange = (() => {
  let low = Infinity, high = -Infinity;
  for (const chart of charts)
    for (const c of chart.series)
      for (const [s] of c.points) { low = Math.min(low, s); high = Math.max(high, s); }
  return Number.isFinite(low) ? [low, Math.max(high, low + 1)] : [0, 1];
})();

function format(v) {
  if (v === null || v === undefined) return "\u2013";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  if (a >= 1000) return Math.round(v).toLocaleString("en");
  return String(Number(v.toPrecision(4)));
}

// Ticks of a linear axis: 1, 2 or 5 times a power of ten apart, about five of them.
function linearTicks(low, high) {
  const raw = (high - low) / 5, power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

// Ticks of a log axis from the largest at or below `low` to the smallest at or above `high`, so that the axis
// ends on ticks: 1-2-5 per decade, or powers of ten alone when that gives too many.
function logTicks(low, high) {
  let ticks = [];
  for (const mantissas of [[1, 2, 5], [1]]) {
    const all = [];
    for (let d = Math.floor(Math.log10(low)) - 1; d <= Math.ceil(Math.log10(high)) + 1; ++d)
      for (const m of mantissas) all.push(Number((m * Math.pow(10, d)).toPrecision(12)));
    const first = all.filter((v) => v <= low * (1 + 1e-9)).pop(), last = all.find((v) => v >= high * (1 - 1e-9));
    ticks = all.filter((v) => v >= first && v <= last);
    if (ticks.length <= 9) break;
  }
  return ticks;
}

function element(name, attributes, parent) {
  const e = document.createElementNS(svgNS, name);
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function drawChart(chart, log) {
  const box = chart.box;
  box.querySelector("svg")?.remove();
  const svg = element("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  box.insertBefore(svg, chart.tip);
  const series = chart.series.filter((c) => c.points.length > 0);
  const usable = (v) => v !== null && Number.isFinite(v) && (!log || v > 0);
  const values = series.flatMap((c) => c.points.map(([, v]) => v).filter(usable));
  if (values.length === 0) {
    const text = element("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg);
    text.textContent = log && series.length ? "no positive values for a log axis" : "no points yet";
    chart.scale = null;
    return;
  }
  const [xMin, xMax] = stepRange;
  let yMin = Math.min(...values), yMax = Math.max(...values);
  if (!log && yMin > 0 && yMin < 0.5 * yMax) yMin = 0;
  if (yMax === yMin) { yMax = yMin === 0 ? 1 : yMin * (log ? 2 : 1.1); if (!log) yMin = yMin * 0.9; }
  const ticks = log ? logTicks(yMin, yMax) : linearTicks(yMin, yMax);
  const lo = Math.min(yMin, ticks[0]), hi = Math.max(yMax, ticks[ticks.length - 1]);
  const f = log ? Math.log10 : (v) => v;
  const px = (s) => L + (W - L - R) * (s - xMin) / (xMax - xMin);
  const py = (v) => T + (H - T - B) * (1 - (f(v) - f(lo)) / (f(hi) - f(lo)));
  chart.scale = { px, py, xMin, xMax };
  for (const v of ticks) {
    element("line", { x1: L, x2: W - R, y1: py(v), y2: py(v), class: "grid" }, svg);
    element("text", { x: L - 6, y: py(v) + 4, "text-anchor": "end", class: "y-tick" }, svg).textContent = format(v);
  }
  for (const s of linearTicks(xMin, xMax)) {
    if (s < xMin || s > xMax) continue;
    element("text", { x: px(s), y: H - B + 15, "text-anchor": "middle" }, svg).textContent = format(s);
  }
  element("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
  element("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, svg);
  element("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent = "step";
  series.forEach((c, i) => {
    let d = "";
    let pen = "M";
    for (const [s, v] of c.points) {
      if (!usable(v)) { pen = "M"; continue; }
      d += `${pen}${px(s).toFixed(1)},${py(v).toFixed(1)} `;
      pen = "L";
    }
    const colour = palette[i % palette.length];
    element("path", { d, fill: "none", stroke: colour, "stroke-width": 1.5, class: "series", "data-label": c.label }, svg);
    if (c.points.length === 1 && usable(c.points[0][1]))
      element("circle", { cx: px(c.points[0][0]), cy: py(c.points[0][1]), r: 3, fill: colour }, svg);
    element("text", { x: W - R - 4, y: T + 12 + 13 * i, "text-anchor": "end", fill: colour }, svg).textContent = c.label;
  });
  const cursor = element("line", { y1: T, y2: H - B, stroke: "#888", "stroke-dasharray": "3 3", visibility: "hidden" }, svg);
  const overlay = element("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "transparent", class: "overlay" }, svg);
  overlay.addEventListener("mousemove", (e) => {
    const rect = svg.getBoundingClientRect();
    const step = xMin + (e.clientX - rect.left - L) / (W - L - R) * (xMax - xMin);
    const lines = [];
    let at = null;
    for (const c of series) {
      // The point of the series nearest to the pointer's step.
      let best = c.points[0];
      for (const p of c.points) if (Math.abs(p[0] - step) < Math.abs(best[0] - step)) best = p;
      if (at === null || Math.abs(best[0] - step) < Math.abs(at - step)) at = best[0];
      lines.push(`${c.label}: ${format(best[1])} (step ${best[0]})`);
    }
    cursor.setAttribute("x1", px(at));
    cursor.setAttribute("x2", px(at));
    cursor.setAttribute("visibility", "visible");
    chart.tip.textContent = "";
    for (const line of lines) {
      const div = document.createElement("div");
      div.textContent = line;
      chart.tip.appendChild(div);
    }
    chart.tip.style.display = "block";
    chart.tip.style.left = `${Math.min(e.clientX - rect.left + 12, W - 160)}px`;
    chart.tip.style.top = `${e.clientY - rect.top + 30}px`;
  });
  overlay.addEventListener("mouseleave", () => { chart.tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
}

function drawAll() {
  const log = $("log-scale").checked;
  for (const chart of charts) drawChart(chart, log);
}

function settings(table, object) {
  for (const [key, value] of Object.entries(object)) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      settings(table, Object.fromEntries(Object.entries(value).map(([k, v]) => [`${key}.${k}`, v])));
      continue;
    }
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.textContent = key;
    tr.appendChild(th);
    tr.insertCell().textContent = Array.isArray(value) ? value.join(", ") : String(value);
  }
}

$("title").textContent = `Training: ${data.title}`;
$("subtitle").textContent = `written at step ${data.step}; rewritten at every validation`;
for (const chart of charts) {
  chart.box = document.createElement("div");
  chart.box.className = "chart";
  chart.box.id = `chart-${chart.id}`;
  const h2 = document.createElement("h2");
  h2.textContent = chart.title;
  chart.box.appendChild(h2);
  chart.tip = document.createElement("div");
  chart.tip.className = "tip";
  chart.box.appendChild(chart.tip);
  $("charts").appendChild(chart.box);
}
$("log-scale").addEventListener("change", drawAll);
drawAll();
settings($("best"), data.best ? { path: data.best.path, step: data.best.step, "valid NLL": format(data.best.valid_loss) }
                              : { best: "none yet (no validation, or none improved)" });
settings($("machine"), data.machine);
settings($("config"), data.config);
)page";

}  // namespace gradformer::models::html_pages
