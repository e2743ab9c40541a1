// bricklm studio: the page. Plain JS modules, no build step; uPlot (vendored) draws the curves.
// This file: the runs table, the live curves and the samples. play.js: playground, look inside, chat.
// Everything a run wrote is put on the page as text (textContent), never as HTML.
import { $, el, fmtDuration, fmtInt, fmtLoss, fmtParams, fmtSteps, getJSON, showError } from "./util.js";
import { fillRunSelects, setupPlay } from "./play.js";

const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#e67700", "#5c940d", "#364fc7", "#a61e4d"];
const state = {
  rows: [],                // /api/runs
  focus: null,             // run id the samples and details show
  selected: new Set(),     // run ids overlaid on the chart
  data: new Map(),         // run id -> {evals, steps, samples, row}
  live: null,              // the EventSource
  liveKey: "",
  plot: null, plotKey: "", drawPending: false,
};

function colorOf(id) {
  const i = state.rows.findIndex((r) => r.id === id);
  return COLORS[(i < 0 ? 0 : i) % COLORS.length];
}

// --- runs ---------------------------------------------------------------------------------

async function loadRuns() {
  try {
    state.rows = await getJSON("/api/runs");
    showError("");
  } catch (e) {
    showError("cannot reach the studio server: " + e.message);
    return;
  }
  if (state.focus === null || !state.rows.some((r) => r.id === state.focus)) {
    state.focus = state.rows.length ? state.rows[0].id : null;
  }
  if (!state.selected.size && state.focus) state.selected.add(state.focus);
  for (const id of [...state.selected]) if (!state.rows.some((r) => r.id === id)) state.selected.delete(id);
  renderRuns();
  renderDetails();
  fillRunSelects(state.rows);
  followLive();
}

function renderRuns() {
  const body = $("runs").tBodies[0];
  body.replaceChildren();
  const groupsDone = new Set();
  for (const row of state.rows) {
    if (row.group) {
      if (groupsDone.has(row.group)) continue;  // its members follow its header
      groupsDone.add(row.group);
      const members = state.rows.filter((r) => r.group === row.group);
      const compare = el("button", { type: "button", textContent: "compare all", "data-group": row.group });
      compare.addEventListener("click", () => {
        state.selected = new Set(members.map((m) => m.id));
        state.focus = members[0].id;
        renderRuns(); renderDetails(); followLive();
      });
      body.append(el("tr", { class: "group" }, el("td", { colSpan: 6 }, `${row.group} (${row.group_kind})`, compare)));
      for (const m of members) body.append(runRow(m, true));
    } else {
      body.append(runRow(row, false));
    }
  }
}

function runRow(row, member) {
  const box = el("input", { type: "checkbox", checked: state.selected.has(row.id), title: "overlay on the chart" });
  box.addEventListener("change", () => {
    if (box.checked) state.selected.add(row.id); else state.selected.delete(row.id);
    followLive();
    scheduleDraw();
  });
  const name = el("td", { class: "name", title: row.id }, member ? row.name : row.id);
  if (row.chat) name.append(el("span", { class: "chat-tag" }, "chat"));
  name.addEventListener("click", () => { state.focus = row.id; renderRuns(); renderDetails(); followLive(); renderSamples(); });
  const step = row.max_iters ? `${fmtSteps(row.step)}/${fmtSteps(row.max_iters)}` : fmtSteps(row.step);
  return el("tr", { class: "run" + (member ? " member" : "") + (row.id === state.focus ? " focus" : ""), "data-run": row.id },
    el("td", {}, box), name,
    el("td", {}, el("span", { class: "status " + row.status }, row.status)),
    el("td", { class: "num" }, fmtParams(row.parameters)),
    el("td", { class: "num best" }, fmtLoss(row.best_val_loss)),
    el("td", { class: "num" }, step));
}

function renderDetails() {
  const row = state.rows.find((r) => r.id === state.focus);
  $("details").hidden = !row;
  if (!row) return;
  $("details-title").textContent = row.id;
  const dl = $("details-summary"), config = $("details-config");
  dl.replaceChildren();
  config.replaceChildren();
  const add = (list, k, v) => list.append(el("dt", {}, k), el("dd", {}, v));
  add(dl, "status", row.status + (row.group ? ` · in ${row.group_kind} ${row.group}` : ""));
  add(dl, "parameters", fmtInt(row.parameters));
  add(dl, "best val loss", row.best_step === null ? fmtLoss(row.best_val_loss) : `${fmtLoss(row.best_val_loss)} (step ${fmtInt(row.best_step)})`);
  const origin = row.config.init_from;  // train --init-from: the run (and step) this one continued
  if (origin) add(dl, "continued from", `${origin.run} (step ${origin.step}${origin.added_tokens ? `; ${origin.added_tokens} tokens added` : ""})`);
  add(dl, "checkpoints", row.checkpoints.length ? row.checkpoints.join(", ") : "none yet");
  if (row.snapshots.length) add(dl, "snapshots", row.snapshots.join(", "));
  const m = row.config.model || {};
  add(dl, "model", ["n_layer", "n_head", "n_embd", "block_size", "vocab_size"].map((k) => `${k} ${m[k]}`).join(" · "));
  for (const table of ["model", "train", "finetune"]) {
    const t = row.config[table];
    if (!t) continue;
    for (const [k, v] of Object.entries(t)) add(config, `${table}.${k}`, typeof v === "object" ? JSON.stringify(v) : String(v));
  }
}

// --- live curves and samples -----------------------------------------------------------------

function followLive() {
  const ids = [...new Set([...state.selected, state.focus].filter(Boolean))].sort();
  const key = ids.join("\n");
  if (key === state.liveKey) return;
  state.liveKey = key;
  if (state.live) state.live.close();
  state.live = null;
  if (!ids.length) { scheduleDraw(); return; }
  const url = "/api/live?" + ids.map((id) => "run=" + encodeURIComponent(id)).join("&");
  const live = state.live = new EventSource(url);
  live.addEventListener("run", (ev) => onRunEvent(JSON.parse(ev.data)));
  // A refused stream (e.g. 503: every live slot is taken by other tabs) is not retried by the browser.
  live.addEventListener("error", () => {
    if (live.readyState === EventSource.CLOSED && state.live === live) showError("live updates stopped (the server refused them: too many open pages?); reload to try again");
  });
}

function onRunEvent(u) {
  let d = state.data.get(u.id);
  if (!d || u.reset) { d = { evals: [], steps: [], samples: [] }; state.data.set(u.id, d); }
  d.evals.push(...(u.evals || []));
  d.steps.push(...(u.steps || []));
  d.samples.push(...(u.samples || []));
  d.row = u.row;
  const i = state.rows.findIndex((r) => r.id === u.id);
  if (i >= 0) {
    const old = state.rows[i];
    state.rows[i] = u.row;
    if (old.status !== u.row.status || old.step !== u.row.step || old.best_val_loss !== u.row.best_val_loss) updateRunRow(u.row);
  }
  if (u.id === state.focus) { renderSamples(); renderDetails(); }
  scheduleDraw();
}

function updateRunRow(row) {
  const tr = document.querySelector(`#runs tr.run[data-run="${CSS.escape(row.id)}"]`);
  if (!tr) return;
  tr.replaceWith(runRow(row, Boolean(row.group)));
}

function renderSamples() {
  const d = state.data.get(state.focus);
  $("samples-run").textContent = state.focus ? `(${state.focus})` : "";
  const list = $("samples");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren();
  for (const s of (d && d.samples) || []) {
    list.append(el("li", {}, el("span", { class: "step" }, `step ${fmtInt(s.step)}`),
      el("span", { class: "loss" }, `val ${fmtLoss(s.val_loss)}`), el("pre", {}, s.text)));
  }
  if (!list.children.length) list.append(el("li", { class: "muted" }, "no samples yet (training writes one at every evaluation)"));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function scheduleDraw() {
  if (state.drawPending) return;
  state.drawPending = true;
  setTimeout(() => { state.drawPending = false; drawChart(); }, 250);
}

// Every selected run's evaluations (train and val) and, optionally, its loss at every step, on one step axis.
function drawChart() {
  const showSteps = $("show-steps").checked;
  const ids = [...state.selected].filter((id) => state.data.has(id));
  const tables = [], series = [{ label: "step" }], legend = $("legend"), progress = $("progress");
  legend.replaceChildren();
  progress.replaceChildren();
  let points = 0;
  for (const id of ids) {
    const d = state.data.get(id), color = colorOf(id);
    const ev = d.evals.filter((e) => e.val_loss !== null);
    tables.push([ev.map((e) => e.step), ev.map((e) => e.val_loss), ev.map((e) => e.train_loss)]);
    series.push({ label: `${id} val`, stroke: color, width: 2.5, spanGaps: true, points: { show: ev.length < 60 } });
    series.push({ label: `${id} train`, stroke: color, width: 1.5, dash: [6, 4], spanGaps: true, points: { show: false } });
    let n = ev.length * 2;
    if (showSteps && d.steps.length) {
      tables.push([d.steps.map((s) => s[0]), d.steps.map((s) => s[1])]);
      series.push({ label: `${id} loss/step`, stroke: color + "55", width: 1, spanGaps: true, points: { show: false } });
      n += d.steps.length;
    }
    points += n;
    legend.append(el("li", { "data-run": id, "data-points": n }, el("span", { class: "swatch", style: `background:${color}` }), id));
    const r = d.row;
    if (r && r.status === "running") {
      progress.append(el("li", { "data-run": id },
        `${id}: step ${fmtInt(r.step)}${r.max_iters ? " / " + fmtInt(r.max_iters) : ""} · ` +
        `${r.tokens_per_s ? fmtInt(r.tokens_per_s) : "–"} tokens/s · ETA ${fmtDuration(r.eta_s)}`));
    }
  }
  const box = $("chart");
  box.setAttribute("data-points", points);
  const key = series.map((s) => s.label).join("|");
  const usable = tables.some((t) => t[0].length > 0);
  if (!usable || typeof uPlot === "undefined") {
    if (state.plot) { state.plot.destroy(); state.plot = null; state.plotKey = ""; }
    box.replaceChildren(el("p", { class: "empty" }, ids.length ? "no evaluations yet" : "tick a run to see its curves"));
    return;
  }
  const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
  if (state.plot && state.plotKey === key) { state.plot.setData(data); return; }
  if (state.plot) state.plot.destroy();
  box.replaceChildren();
  state.plotKey = key;
  state.plot = new uPlot({
    width: Math.max(320, box.clientWidth), height: 300, series,
    scales: { x: { time: false } },
    axes: [{ label: "step" }, { label: "loss" }],
    legend: { show: false },
    cursor: { drag: { x: true, y: false } },
  }, data, box);
}

window.addEventListener("resize", () => { if (state.plot) state.plot.setSize({ width: Math.max(320, $("chart").clientWidth), height: 300 }); });

// --- start ----------------------------------------------------------------------------------------

async function start() {
  setupPlay();
  $("show-steps").addEventListener("change", drawChart);
  try {
    const info = await getJSON("/api/info");
    $("folder").textContent = info.single_run ? `one run · bricklm ${info.version}` : `runs folder: ${info.folder} · bricklm ${info.version}`;
  } catch (e) { showError(e.message); }
  await loadRuns();
  renderSamples();
  setInterval(loadRuns, 5000);
}

start();
