// bricklm studio: the page. Plain JS, no build step; uPlot (vendored) draws the curves.
// Everything a run or a model wrote is put on the page as text (textContent), never as HTML.
(function () {
  "use strict";

  const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#e67700", "#5c940d", "#364fc7", "#a61e4d"];
  const $ = (id) => document.getElementById(id);
  const state = {
    rows: [],                // /api/runs
    focus: null,             // run id the samples and details show
    selected: new Set(),     // run ids overlaid on the chart
    data: new Map(),         // run id -> {evals, steps, samples, row}
    live: null,              // the EventSource
    liveKey: "",
    plot: null, plotKey: "", drawPending: false,
  };

  // --- small helpers -----------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const fmtLoss = (x) => (x === null || x === undefined ? "–" : x.toFixed(3));
  const fmtInt = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));
  function fmtParams(n) {
    if (!n) return "–";
    return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(0) + "k" : String(n);
  }
  const fmtSteps = (n) => (n === null || n === undefined ? "–" : n >= 10000 ? fmtParams(n) : fmtInt(n));
  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
  }
  const visible = (c) => (c === " " ? "␣" : c === "\n" ? "↵" : c === "\t" ? "⇥" : c);
  function colorOf(id) {
    const i = state.rows.findIndex((r) => r.id === id);
    return COLORS[(i < 0 ? 0 : i) % COLORS.length];
  }
  function showError(message) {
    const e = $("error");
    e.textContent = message || "";
    e.hidden = !message;
  }
  async function getJSON(url, options) {
    const r = await fetch(url, options);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((body.error && body.error.message) || `${r.status} ${r.statusText}`);
    return body;
  }

  // Reads a fetch() response of server-sent events; calls onData with each parsed `data:` payload.
  async function readEvents(response, onData) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const payload = line.slice(6);
          if (payload === "[DONE]") return;
          onData(JSON.parse(payload));
        }
      }
    }
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
    fillRunSelects();
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
    state.live = new EventSource(url);
    state.live.addEventListener("run", (ev) => onRunEvent(JSON.parse(ev.data)));
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

  // --- playground -------------------------------------------------------------------------------

  function fillRunSelects() {
    fillSelect($("pg-run"), state.rows.filter((r) => r.checkpoints.length));
    fillSelect($("chat-run"), state.rows.filter((r) => r.chat && r.checkpoints.length));
    fillCheckpoints();
    const off = !$("chat-run").options.length;
    $("chat-panel").classList.toggle("off", off);
    $("chat-hint").textContent = off ? "No fine-tuned run here yet: make one with `bricklm finetune --from RUN`."
      : "A fine-tuned run (bricklm finetune), streamed reply by reply.";
  }

  function fillSelect(select, rows) {
    const keep = select.value;
    const ids = rows.map((r) => r.id);
    if ([...select.options].map((o) => o.value).join("\n") === ids.join("\n")) return;
    select.replaceChildren(...ids.map((id) => el("option", { value: id, textContent: id })));
    if (ids.includes(keep)) select.value = keep;
  }

  function fillCheckpoints() {
    const row = state.rows.find((r) => r.id === $("pg-run").value);
    const select = $("pg-ckpt"), keep = select.value;
    const names = row ? ["best", "last", ...row.checkpoints.slice().reverse(), ...row.snapshots] : [];
    if ([...select.options].map((o) => o.value).join("\n") === names.join("\n")) return;
    select.replaceChildren(...names.map((n) => el("option", { value: n, textContent: n })));
    if (names.includes(keep)) select.value = keep;
  }

  const pg = { ids: [], promptLen: 0, model: "", abort: null };

  function number(id, fallback) {
    const v = parseFloat($(id).value);
    return Number.isFinite(v) ? v : fallback;
  }

  async function generate(ev) {
    ev.preventDefault();
    const run = $("pg-run").value;
    if (!run) return;
    const ckpt = $("pg-ckpt").value;
    pg.model = ckpt && ckpt !== "best" ? `${run}@${ckpt}` : run;
    pg.ids = []; pg.promptLen = 0;
    const out = $("pg-output");
    const prompt = $("pg-prompt").value;
    out.replaceChildren(el("span", { class: "prompt" }, prompt));
    $("inside-panel").hidden = true;
    pg.abort = new AbortController();
    $("pg-go").disabled = true; $("pg-stop").disabled = false;
    $("pg-status").textContent = "generating…";
    const topK = Math.round(number("pg-topk", 0));
    const body = {
      model: pg.model, prompt, stream: true, return_token_ids: true,
      max_tokens: Math.round(number("pg-length", 200)), temperature: number("pg-temperature", 0.8),
      top_p: number("pg-topp", 1), top_k: topK,
    };
    let made = 0;
    try {
      const r = await fetch("/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body), signal: pg.abort.signal });
      if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error((e.error && e.error.message) || r.statusText); }
      await readEvents(r, (chunk) => {
        if (chunk.prompt_token_ids) { pg.ids = chunk.prompt_token_ids.slice(); pg.promptLen = pg.ids.length; }
        for (const c of chunk.choices || []) {
          pg.ids.push(...(c.token_ids || []));
          made += (c.token_ids || []).length;
          if (!c.text) continue;
          // One span per piece of text, pointing at the last token behind it (one character, one token).
          const span = el("span", { class: "tok", "data-pos": pg.ids.length - 1, title: "look inside" }, c.text);
          out.append(span);
        }
      });
      $("pg-status").textContent = `${made} tokens`;
    } catch (e) {
      $("pg-status").textContent = e.name === "AbortError" ? `stopped after ${made} tokens` : "error: " + e.message;
    } finally {
      $("pg-go").disabled = false; $("pg-stop").disabled = true;
    }
  }

  async function lookInside(span) {
    for (const s of document.querySelectorAll("#pg-output .tok.picked")) s.classList.remove("picked");
    span.classList.add("picked");
    const position = parseInt(span.getAttribute("data-pos"), 10);
    try {
      const view = await getJSON("/api/inside", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: pg.model, ids: pg.ids.slice(0, position + 1), prompt_len: pg.promptLen, position }) });
      renderInside(view);
      showError("");
    } catch (e) {
      showError("look inside: " + e.message);
    }
  }

  function renderInside(v) {
    $("inside-panel").hidden = false;
    const final = v.lens[v.lens.length - 1];
    $("inside-title").textContent = `for "${visible(v.token)}" (p = ${final.chosen_p.toFixed(3)}), after ${v.context.length} characters of context`;
    const box = $("attention");
    box.replaceChildren();
    v.attention.forEach((heads, layer) => {
      const section = el("div", { class: "layer" }, el("h4", {}, `layer ${layer + 1}`));
      if (!heads) section.append(el("p", { class: "muted" }, "no attention in this block"));
      (heads || []).forEach((weights, h) => {
        const strip = el("div", { class: "strip" });
        weights.forEach((w, i) => {
          // The square root keeps small weights visible; even attention stays pale, a sharp head shows one dark cell.
          const alpha = Math.sqrt(w).toFixed(3);
          strip.append(el("span", { title: `${JSON.stringify(v.context[i])}: ${w.toFixed(3)}`, style: `background: rgba(47,111,223,${alpha}); color: ${alpha > 0.55 ? "#fff" : "inherit"}` }, visible(v.context[i])));
        });
        section.append(el("div", { class: "head", "data-layer": layer, "data-head": h }, el("span", { class: "label" }, `head ${h + 1}`), strip));
      });
      box.append(section);
    });
    const lens = $("lens").tBodies[0];
    lens.replaceChildren();
    for (const row of v.lens) {
      const tr = el("tr", { class: "lens-row" }, el("th", {}, row.layer));
      for (const t of row.top) {
        tr.append(el("td", {}, el("span", { class: "chip" + (t.token === v.token ? " chosen" : "") }, visible(t.token), el("small", {}, t.p.toFixed(2)))));
      }
      lens.append(tr);
    }
  }

  // --- chat -------------------------------------------------------------------------------------

  const chat = { messages: [], busy: false };

  async function send(ev) {
    ev.preventDefault();
    const text = $("chat-input").value.trim();
    const model = $("chat-run").value;
    if (!text || !model || chat.busy) return;
    $("chat-input").value = "";
    chat.messages.push({ role: "user", content: text });
    const log = $("chat-log");
    log.append(el("li", { class: "user" }, text));
    const bubble = el("li", { class: "assistant" }, "");
    log.append(bubble);
    chat.busy = true; $("chat-send").disabled = true;
    let reply = "";
    try {
      const r = await fetch("/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model, messages: chat.messages, stream: true, temperature: number("chat-temperature", 0.7) }) });
      if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error((e.error && e.error.message) || r.statusText); }
      await readEvents(r, (chunk) => {
        for (const c of chunk.choices || []) {
          if (c.delta && c.delta.content) { reply += c.delta.content; bubble.textContent = reply; log.scrollTop = log.scrollHeight; }
        }
      });
      chat.messages.push({ role: "assistant", content: reply });
    } catch (e) {
      bubble.textContent = "error: " + e.message;
      chat.messages.pop();
    } finally {
      chat.busy = false; $("chat-send").disabled = false;
    }
  }

  // --- start --------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", async () => {
    $("playground").addEventListener("submit", generate);
    $("pg-stop").addEventListener("click", () => pg.abort && pg.abort.abort());
    $("pg-run").addEventListener("change", fillCheckpoints);
    $("pg-output").addEventListener("click", (e) => { if (e.target.classList.contains("tok")) lookInside(e.target); });
    $("show-steps").addEventListener("change", drawChart);
    $("chat").addEventListener("submit", send);
    $("chat-reset").addEventListener("click", () => { chat.messages = []; $("chat-log").replaceChildren(); });
    $("chat-run").addEventListener("change", () => { chat.messages = []; $("chat-log").replaceChildren(); });
    try {
      const info = await getJSON("/api/info");
      $("folder").textContent = info.single_run ? `one run · bricklm ${info.version}` : `runs folder: ${info.folder} · bricklm ${info.version}`;
    } catch (e) { showError(e.message); }
    await loadRuns();
    renderSamples();
    setInterval(loadRuns, 5000);
  });
})();
