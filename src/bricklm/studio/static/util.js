// bricklm studio: small helpers every part of the page shares.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
export const fmtLoss = (x) => (x === null || x === undefined ? "–" : x.toFixed(3));
export const fmtInt = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));
export function fmtParams(n) {
  if (!n) return "–";
  return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(0) + "k" : String(n);
}
export const fmtSteps = (n) => (n === null || n === undefined ? "–" : n >= 10000 ? fmtParams(n) : fmtInt(n));
export function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
}
export const visible = (c) => (c === " " ? "␣" : c === "\n" ? "↵" : c === "\t" ? "⇥" : c);
export function showError(message) {
  const e = $("error");
  e.textContent = message || "";
  e.hidden = !message;
}
export async function getJSON(url, options) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || `${r.status} ${r.statusText}`);
  return body;
}

// Reads a fetch() response of server-sent events; calls onData with each parsed `data:` payload
// (an error event, sent when generation fails mid-stream, is thrown as an Error).
export async function readEvents(response, onData) {
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
        const data = JSON.parse(payload);
        if (data.error) throw new Error(data.error.message);  // the job failed mid-stream
        onData(data);
      }
    }
  }
}
