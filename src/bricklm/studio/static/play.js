// bricklm studio: the playground (text streamed from any checkpoint), look inside, and chat.
// Generated text goes on the page as text (textContent), never as HTML.
import { markedText, markTokens, showSource } from "./copied.js";
import { $, el, getJSON, readEvents, showError, visible } from "./util.js";

// --- playground -------------------------------------------------------------------------------

let rows = [];  // the runs table, as app.js last loaded it

export function fillRunSelects(newRows) {
  rows = newRows;
  fillSelect($("pg-run"), rows.filter((r) => r.checkpoints.length));
  fillSelect($("chat-run"), rows.filter((r) => r.chat && r.checkpoints.length));
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
  const row = rows.find((r) => r.id === $("pg-run").value);
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
  $("source-panel").hidden = true;
  pg.abort = new AbortController();
  $("pg-go").disabled = true; $("pg-stop").disabled = false;
  $("pg-status").textContent = "generating…";
  const topK = Math.round(number("pg-topk", 0));
  const body = {
    model: pg.model, prompt, stream: true, return_token_ids: true, return_copied: true,
    max_tokens: Math.round(number("pg-length", 200)), temperature: number("pg-temperature", 0.8),
    top_p: number("pg-topp", 1), top_k: topK,
  };
  let made = 0, copied = null, finish = null;
  try {
    const r = await fetch("/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: pg.abort.signal });
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error((e.error && e.error.message) || r.statusText); }
    await readEvents(r, (chunk) => {
      if (chunk.prompt_token_ids) { pg.ids = chunk.prompt_token_ids.slice(); pg.promptLen = pg.ids.length; }
      for (const c of chunk.choices || []) {
        pg.ids.push(...(c.token_ids || []));
        made += (c.token_ids || []).length;
        if (c.copied) copied = c.copied;
        if (c.finish_reason) finish = c.finish_reason;
        if (!c.text) continue;
        // One span per piece of text, pointing at the last token behind it (one character, one token).
        const span = el("span", { class: "tok", "data-pos": pg.ids.length - 1, title: "look inside" }, c.text);
        out.append(span);
      }
    });
    const spans = markTokens(out.querySelectorAll(".tok"), copied);
    $("pg-status").textContent = `${made} tokens` + (spans ? `; ${spans} copied span${spans > 1 ? "s" : ""} (click one for its source)` : "")
      + (finish === "content_filter" ? "; stopped: it would have recited training text (--max-copied)" : "");
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
  let reply = "", copied = null;
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: chat.messages, stream: true, return_copied: true, temperature: number("chat-temperature", 0.7) }) });
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error((e.error && e.error.message) || r.statusText); }
    await readEvents(r, (chunk) => {
      for (const c of chunk.choices || []) {
        if (c.delta && c.delta.content) { reply += c.delta.content; bubble.textContent = reply; log.scrollTop = log.scrollHeight; }
        if (c.copied) copied = c.copied;
      }
    });
    if (!reply) bubble.textContent = "(the model ended its turn without a word)";
    else bubble.replaceChildren(...markedText(reply, copied));
    bubble.setAttribute("data-model", model);
    chat.messages.push({ role: "assistant", content: reply });
  } catch (e) {
    bubble.textContent = "error: " + e.message;
    chat.messages.pop();
  } finally {
    chat.busy = false; $("chat-send").disabled = false;
  }
}

// --- wiring ---------------------------------------------------------------------------------------

export function setupPlay() {
  $("playground").addEventListener("submit", generate);
  $("pg-stop").addEventListener("click", () => pg.abort && pg.abort.abort());
  $("pg-run").addEventListener("change", fillCheckpoints);
  $("pg-output").addEventListener("click", (e) => {
    if (!e.target.classList.contains("tok")) return;
    lookInside(e.target);
    if (e.target.classList.contains("copied")) showSource(pg.model, e.target);
  });
  $("chat-log").addEventListener("click", (e) => {
    const li = e.target.closest("li");
    if (e.target.classList.contains("copied") && li) showSource(li.getAttribute("data-model"), e.target);
  });
  $("chat").addEventListener("submit", send);
  $("chat-reset").addEventListener("click", () => { chat.messages = []; $("chat-log").replaceChildren(); });
  $("chat-run").addEventListener("change", () => { chat.messages = []; $("chat-log").replaceChildren(); });
}
