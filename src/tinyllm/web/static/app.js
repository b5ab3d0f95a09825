// tinyllm serve: the page. Plain JavaScript, no build step, no network but this server's API.
// Every number drawn here comes from the JSON API (see the README); charts are SVG or DOM elements
// whose data-* attributes carry the values, so tests can read what the page shows.
"use strict";

const state = {
  run: null, summary: null, records: [], lastIter: 0, inspected: null, inspectedText: null, position: null, timer: null,
  steps: [], step: null, playing: false, views: [],  // snapshot steps; the chosen one (null: the latest weights)
};
const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

const visible = (text) => text.replace(/\n/g, "⏎").replace(/\t/g, "⇥").replace(/ /g, "·");
const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const runPath = (tail) => `/api/runs/${encodeURIComponent(state.run)}/${tail}`;

// ---- 1. runs and live curves ----

async function loadRuns() {
  try {
    const { runs } = await api("/api/runs");
    const body = $("#runs-table tbody");
    body.replaceChildren(...runs.map((run) => el("tr", {
      "data-name": run.name, class: run.name === state.run ? "selected" : "", onclick: () => selectRun(run),
    },
      el("td", { text: run.name + (run.training ? " (training)" : "") }), el("td", { text: run.task }),
      el("td", { text: run.params === null ? "?" : run.params.toLocaleString() }),
      el("td", { text: run.steps.toLocaleString(), class: "steps" }), el("td", { text: fmt(run.best_test_loss, 4) }),
      el("td", { text: new Date(run.modified * 1000).toLocaleString() }))));
    if (!runs.length) $("#status").textContent = "no runs here yet: train one (tinyllm train shakespeare)";
    if (state.run) state.summary = runs.find((r) => r.name === state.run) || state.summary;
  } catch (e) { showError(e.message); }
}

function selectRun(summary) {
  state.run = summary.name;
  state.summary = summary;
  state.records = [];
  state.lastIter = 0;
  state.inspected = null;
  state.inspectedText = null;
  state.steps = [];
  state.step = null;
  state.playing = false;
  document.querySelectorAll("#runs-table tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.name === summary.name));
  $("#prompt").value = summary.example_prompt;
  state.position = null;
  $("#generate").hidden = false;
  $("#inspect").hidden = true;
  $("#output").textContent = "";
  $("#status").textContent = `${summary.name}: ${summary.task}`;
  showError("");
  state.baselines = null;
  $("#baselines").textContent = "";
  clearTimeout(state.timer);
  pollMetrics();
  loadSnapshots().then(loadEmbeddings);
  loadBaselines();
}

async function loadBaselines() {
  // counting models of the run's own split (uniform ... Kneser-Ney 6-gram): lines on the loss chart
  const name = state.run;
  try {
    const data = await api(`/api/runs/${encodeURIComponent(name)}/baselines`);
    if (name !== state.run || !data.baselines) return;
    state.baselines = data;
    const passed = Object.entries(data.passed_at).map(([k, at]) => at ? `${k} at step ${at.step}` : `${k} not yet`);
    $("#baselines").textContent = `below the counting baselines: ${passed.join(", ")}`;
    drawCurves();
  } catch (e) { /* no data file for the counts here: the curves stand alone */ }
}

async function pollMetrics() {
  const name = state.run;
  try {
    const { records } = await api(`/api/runs/${encodeURIComponent(name)}/metrics?since=${state.lastIter}`);
    if (name !== state.run) return;
    if (records.length) {
      const more = state.lastIter > 0;  // records after the first answer: the run is training now
      state.records.push(...records);
      state.lastIter = records[records.length - 1].iter;
      drawCurves();
      if (more) loadSnapshots();  // a training writes snapshots as it goes: they join the slider
    }
  } catch (e) { showError(e.message); }
  if (name === state.run) state.timer = setTimeout(pollMetrics, 2000);
}

function drawCurves() {
  const evals = state.records.filter((r) => "test_loss" in r);
  const lines = state.baselines ? Object.entries(state.baselines.baselines) : [];
  const charts = [
    chart("loss", [["train_loss", state.records, "#9bb7ec", false], ["test_loss", evals, "#c2410c", true],
      ["eval_train_loss", evals, "#2f6fde", true]], 420, 220, lines, state.step),
    chart("learning rate", [["lr", state.records, "#2f6fde", false]]),
  ];
  const extra = [...new Set(evals.flatMap(Object.keys))].filter((k) => k.endsWith("accuracy") || k.endsWith("bits_per_char"));
  if (extra.length) {
    const colors = ["#15803d", "#7c3aed", "#c2410c"];
    charts.push(chart("task metrics", extra.map((k, i) => [k, evals, colors[i % 3], true]), 420, 220, [], state.step));
  }
  $("#curves").replaceChildren(...charts);
}

function chart(title, series, width = 420, height = 220, lines = [], marker = null) {
  const pad = 38;
  const points = series.flatMap(([key, rows]) => rows.filter((r) => Number.isFinite(r[key])).map((r) => [r.iter, r[key]]));
  if (points.length) lines.forEach(([, value]) => points.push([points[0][0], value]));  // the range holds the lines
  const svg = el("svg:svg", { class: "chart", width, height, "data-title": title });
  svg.append(el("svg:text", { x: pad, y: 14, text: title }));
  if (!points.length) return svg;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1), Math.min(...ys), Math.max(...ys)];
  const X = (x) => pad + ((x - x0) / (x1 - x0)) * (width - pad - 10);
  const Y = (y) => height - 22 - ((y - y0) / (y1 - y0 || 1)) * (height - 44);
  svg.append(el("svg:text", { x: 2, y: Y(y1) + 4, text: y1.toPrecision(3) }), el("svg:text", { x: 2, y: Y(y0), text: y0.toPrecision(3) }),
    el("svg:text", { x: width - 60, y: height - 4, text: `iter ${x1}` }));
  series.forEach(([key, rows, color, dots], i) => {
    const pts = rows.filter((r) => Number.isFinite(r[key]));
    if (!pts.length) return;
    svg.append(el("svg:polyline", {
      points: pts.map((r) => `${X(r.iter).toFixed(1)},${Y(r[key]).toFixed(1)}`).join(" "), fill: "none", stroke: color,
      "stroke-width": dots ? 1.6 : 1, "data-series": key, "data-count": pts.length, "data-last": pts[pts.length - 1][key],
    }));
    svg.append(el("svg:text", { x: width - 150, y: 30 + 13 * i, fill: color, text: key, style: `fill:${color}` }));
  });
  lines.forEach(([label, value]) => svg.append(
    el("svg:line", { x1: pad, x2: width - 10, y1: Y(value), y2: Y(value), class: "baseline", "data-baseline": label, "data-value": value }),
    el("svg:text", { x: pad + 2, y: Y(value) - 2, class: "baseline-label", text: label }),
  ));
  if (marker !== null) {  // the step the slider chose
    svg.append(el("svg:line", { x1: X(marker), x2: X(marker), y1: 20, y2: height - 22, class: "step-marker", "data-marker-step": marker }),
      el("svg:text", { x: X(marker) + 3, y: 28, class: "step-marker-label", text: `step ${marker}` }));
  }
  return svg;
}

// ---- 2. generate: tokens as they are sampled (server-sent events over a POST) ----

function samplerSettings(form, withGeneration) {
  const data = new FormData(form);
  const number = (name, parse = Number) => (data.get(name) === "" ? null : parse(data.get(name)));
  const body = {
    temperature: number("temperature") ?? 1, top_k: number("top_k", (v) => Number(v)), top_p: number("top_p"),
    min_p: number("min_p"), repetition_penalty: number("repetition_penalty") ?? 1,
  };
  if (withGeneration) {
    body.max_new_tokens = number("max_new_tokens");
    body.seed = number("seed");
    const stop = data.get("stop");
    if (stop) body.stop = [stop.replace(/\\n/g, "\n").replace(/\\t/g, "\t")];
  }
  return body;
}

async function generate(event) {
  event.preventDefault();
  const form = $("#generate-form"), output = $("#output"), prompt = $("#prompt").value;
  const body = { prompt, ...samplerSettings(form, true) };
  showError("");
  output.replaceChildren(el("span", { text: state.summary.continues_text ? prompt : "" }));
  const added = el("span", { class: "new" });
  output.append(added);
  $("#generate-button").disabled = true;
  try {
    const response = await fetch(`/api/runs/${encodeURIComponent(state.run)}/generate`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      throw new Error(problem.error || `the server answered ${response.status}`);
    }
    let completion = "";
    for await (const [kind, data] of serverEvents(response)) {
      if (kind === "token") { added.textContent += data.text; }
      else if (kind === "error") throw new Error(data.error);
      else if (kind === "done") { completion = data.text; output.dataset.done = "true"; }
    }
    added.textContent = completion;
    await inspect(state.summary.continues_text ? prompt + completion : prompt);
  } catch (e) { showError(e.message); }
  finally { $("#generate-button").disabled = false; }
}

async function* serverEvents(response) {
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const kind = (block.match(/^event: (.*)$/m) || [, "message"])[1];
      const data = (block.match(/^data: (.*)$/m) || [, "{}"])[1];
      yield [kind, JSON.parse(data)];
    }
  }
}

// ---- 3-5. inspect: next-token stages, attention, logit lens ----

async function inspect(text) {
  const body = { prompt: text, ...samplerSettings($("#generate-form"), false) };
  const step = state.step;
  if (step !== null) body.step = step;
  const inspected = await api(runPath("inspect"), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (step !== state.step) return;  // the slider moved on while this was on its way
  state.inspected = inspected;
  state.inspectedText = text;
  $("#inspect").hidden = false;
  $("#inspect").dataset.step = step ?? "latest";
  const tokens = state.inspected.tokens;
  $("#tokens").title = state.inspected.dropped ? `the first ${state.inspected.dropped} tokens are outside the model's window` : "";
  $("#tokens").replaceChildren(...tokens.map((t, i) => el("span", { class: "tok", "data-pos": i, text: visible(t), onclick: () => selectPosition(i) })));
  drawAttentionGrid();
  drawLogitLens();
  selectPosition(state.position !== null && state.position < tokens.length ? state.position : tokens.length - 1);
}

function selectPosition(position) {
  state.position = position;
  document.querySelectorAll(".tok").forEach((t) => t.classList.toggle("selected", Number(t.dataset.pos) === position));
  drawStages(position);
  drawAttentionHeads(position);
}

const STAGE_TITLES = { raw: "raw softmax", repetition_penalty: "after repetition penalty", temperature: "after temperature",
  top_k: "after top-k", top_p: "after top-p", min_p: "after min-p" };

function drawStages(position) {
  const { names, positions } = state.inspected.stages;
  const { candidates, kept } = positions[position];
  $("#stages").replaceChildren(...names.map((name, s) => el("div", { class: "stage", "data-stage": name },
    el("h4", { text: `${STAGE_TITLES[name]} (${kept[s]} tokens left)` }),
    ...candidates.map((c) => {
      const p = c.probs[s], removed = p === 0 && c.probs[0] > 0;
      return el("div", { class: "bar-row" + (removed ? " removed" : ""), "data-token": c.token, "data-prob": p },
        el("span", { class: "bar-label", text: visible(c.token) }),
        el("span", { class: "bar-track" }, el("div", { class: "bar", style: `width:${(100 * p).toFixed(2)}%` })),
        el("span", { class: "bar-value", text: removed ? "removed" : fmt(p, 3) }));
    }))));
}

function drawAttentionHeads(position) {
  const { attention, tokens } = state.inspected;
  const panels = [];
  attention.forEach((heads, layer) => heads.forEach((pattern, head) => {
    const row = pattern[position];
    panels.push(el("div", { class: "head-panel", "data-layer": layer, "data-head": head },
      el("span", { class: "name", text: `layer ${layer + 1} head ${head + 1}` }),
      ...tokens.slice(0, position + 1).map((t, k) => el("span", {
        class: "w", "data-weight": row[k], title: `${fmt(row[k], 3)}`, style: `background: rgba(47,111,222,${row[k].toFixed(3)})`, text: visible(t),
      }))));
  }));
  $("#attention-heads").replaceChildren(...panels);
}

function drawAttentionGrid() {
  const { attention } = state.inspected;
  const grid = $("#attention-grid");
  grid.style.gridTemplateColumns = `repeat(${attention[0].length}, max-content)`;
  const panels = [];
  attention.forEach((heads, layer) => heads.forEach((pattern, head) => {
    const T = pattern.length, scale = Math.max(1, Math.floor(160 / T));
    const canvas = el("canvas", { width: T * scale, height: T * scale });
    const ctx = canvas.getContext("2d");
    pattern.forEach((row, q) => row.forEach((w, k) => {
      if (k > q) return;
      ctx.fillStyle = `rgba(47,111,222,${Math.min(1, w)})`;
      ctx.fillRect(k * scale, q * scale, scale, scale);
    }));
    panels.push(el("div", { class: "grid-panel", "data-layer": layer, "data-head": head }, el("span", { text: `L${layer + 1} H${head + 1}` }), canvas));
  }));
  grid.replaceChildren(...panels);
}

function drawLogitLens() {
  const { logit_lens: lens, tokens } = state.inspected;
  const header = el("tr", {}, el("th", { text: "after" }), ...tokens.map((t) => el("th", { text: visible(t) })));
  const rows = lens.layers.map((layer, l) => el("tr", { "data-layer": l }, el("th", { text: layer }),
    ...lens.top_token[l].map((t, i) => {
      const p = lens.top_prob[l][i];
      return el("td", { "data-prob": p, title: `${fmt(p, 3)}`, style: `background: rgba(21,128,61,${p.toFixed(3)})`, text: visible(t) });
    })));
  $("#logit-lens").replaceChildren(el("table", {}, el("thead", {}, header), el("tbody", {}, ...rows)));
}

// ---- 6. embeddings ----

async function loadEmbeddings() {
  const name = state.run, step = state.step;
  if (!state.summary.has_weights) { $("#embeddings").hidden = true; return; }
  try {
    const data = await api(runPath("embeddings") + (step === null ? "" : `?step=${step}`));
    if (name !== state.run || step !== state.step) return;
    const views = [scatter("token embeddings (PCA, 2-D)", data.labels, data.points)];
    for (const view of data.views) {  // the task's own (Task.page_views), with the task's words for the guide
      views.push(el("div", { class: "task-view", "data-tour": view.name, "data-view": view.name },
        bars(view.title, view.x, view.y), view.guide ? guidePanel(view.name, { title: view.title, ...view.guide }) : ""));
    }
    state.views = data.views.map((v) => ({ name: v.name, title: v.title, ...v.guide }));
    $("#embedding-views").replaceChildren(...views);
    $("#embeddings").dataset.step = step ?? "latest";
    $("#embeddings").hidden = false;
  } catch (e) { showError(e.message); }
}

// ---- the step slider: the views at a snapshot along the training ----

async function loadSnapshots() {
  const name = state.run;
  try {
    const { steps } = await api(runPath("snapshots"));
    if (name !== state.run) return;
    state.steps = steps;
    const slider = $("#step-slider");
    slider.max = steps.length;  // the last place is the latest weights
    slider.value = state.step === null ? steps.length : Math.max(0, steps.indexOf(state.step));
    slider.dataset.steps = steps.join(",");
    slider.disabled = $("#play").disabled = !steps.length;
    $("#steps").hidden = !state.summary.has_weights;
    showStep();
  } catch (e) { showError(e.message); }
}

function showStep() {
  const total = state.summary.steps.toLocaleString();
  $("#step-label").textContent = !state.steps.length ? "no snapshots in this run (train with --snapshots N)"
    : state.step === null ? `latest weights (step ${total})` : `step ${state.step.toLocaleString()} of ${total}`;
  $("#step-slider").dataset.step = state.step ?? "latest";
  $("#generate-note").textContent = state.step === null ? ""
    : `Generating uses the latest weights; the views below show step ${state.step.toLocaleString()}.`;
}

async function chooseStep(index) {
  state.step = index >= state.steps.length ? null : state.steps[index];
  $("#step-slider").value = index;
  showStep();
  drawCurves();
  await Promise.all([state.inspectedText === null ? null : inspect(state.inspectedText), loadEmbeddings()]);
}

async function play() {
  if (state.playing) { state.playing = false; return; }
  const slider = $("#step-slider"), name = state.run;
  let index = Number(slider.value) >= state.steps.length ? 0 : Number(slider.value) + 1;  // from the start at the end
  state.playing = true;
  $("#play").textContent = "\u275A\u275A pause";
  try {
    for (; state.playing && name === state.run && index <= state.steps.length; index++) {
      await chooseStep(index);
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  } catch (e) { showError(e.message); }
  state.playing = false;
  $("#play").textContent = "\u25B6 play";
}

function scatter(title, labels, points, size = 420) {
  const svg = el("svg:svg", { class: "chart", width: size, height: size, "data-title": title });
  svg.append(el("svg:text", { x: 8, y: 14, text: title }));
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const span = (v) => [Math.min(...v), Math.max(...v) - Math.min(...v) || 1];
  const [x0, dx] = span(xs), [y0, dy] = span(ys);
  points.slice(0, 400).forEach(([x, y], i) => svg.append(el("svg:text", {
    x: (20 + ((x - x0) / dx) * (size - 40)).toFixed(1), y: (30 + ((y - y0) / dy) * (size - 50)).toFixed(1),
    "data-label": labels[i], style: "fill:#1d2330;font-size:12px", text: visible(labels[i]),
  })));
  return svg;
}

function bars(title, xs, values, width = 520, height = 220) {
  const svg = el("svg:svg", { class: "chart", width, height, "data-title": title });
  svg.append(el("svg:text", { x: 8, y: 14, text: title }));
  const top = Math.max(...values, 1e-9), w = (width - 40) / values.length;
  values.forEach((v, i) => svg.append(el("svg:rect", {
    x: (30 + i * w).toFixed(1), y: (height - 20 - (v / top) * (height - 50)).toFixed(1), width: Math.max(1, w - 1).toFixed(1),
    height: ((v / top) * (height - 50)).toFixed(1), fill: "#2f6fde", "data-x": xs[i], "data-value": v,
  }, el("svg:title", { text: `${xs[i]}: ${fmt(v, 3)}` }))));
  return svg;
}

// ---- start ----

$("#generate-form").addEventListener("submit", generate);
$("#step-slider").addEventListener("input", (e) => { state.playing = false; chooseStep(Number(e.target.value)).catch((err) => showError(err.message)); });
$("#play").addEventListener("click", play);
$("#inspect-button").addEventListener("click", () => inspect($("#prompt").value).catch((e) => showError(e.message)));
const runsLoaded = loadRuns();
setInterval(loadRuns, 5000);
