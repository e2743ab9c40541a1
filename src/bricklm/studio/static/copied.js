// bricklm studio: copied spans (text found verbatim in the run's training text) highlighted in the playground's
// output and the chat's replies; clicking one shows the training text around it (GET /api/source).
// Spans come from the API's "copied" field (return_copied); their start and length count characters (code
// points, as Python does), so texts are walked with Array.from, never by UTF-16 length.
import { $, el, getJSON, showError } from "./util.js";

// Marks the playground's token spans that overlap a copied span (a token is marked whole).
export function markTokens(tokens, copied) {
  if (!copied || !copied.available || !copied.spans.length) return 0;
  let at = 0;
  for (const tok of tokens) {
    const n = Array.from(tok.textContent).length;
    const span = copied.spans.find((s) => at < s.start + s.length && s.start < at + n);
    if (span) mark(tok, span, Math.max(0, at - span.start));
    at += n;
  }
  return copied.spans.length;
}

// The text as plain text with <mark>s over its copied spans (for a chat reply).
export function markedText(text, copied) {
  const chars = Array.from(text);
  if (!copied || !copied.available || !copied.spans.length) return [text];
  const out = [];
  let at = 0;
  for (const s of copied.spans) {
    if (s.start > at) out.push(chars.slice(at, s.start).join(""));
    const from = Math.max(at, s.start);
    out.push(mark(el("mark", {}, chars.slice(from, s.start + s.length).join("")), s, from - s.start));
    at = s.start + s.length;
  }
  if (at < chars.length) out.push(chars.slice(at).join(""));
  return out;
}

function mark(node, span, into) {
  node.classList.add("copied");
  node.setAttribute("data-position", span.position === undefined ? "" : span.position);
  node.setAttribute("data-length", span.length);
  node.setAttribute("data-into", into);  // characters of the span before this node
  node.title = `copied: ${span.length} characters of the training text` + (span.document ? ` (${span.document})` : "");
  return node;
}

// Shows the training text around the span that `node` is part of.
export async function showSource(model, node) {
  const panel = $("source-panel");
  const position = node.getAttribute("data-position");
  panel.hidden = false;
  $("source-title").textContent = "";
  $("source-before").textContent = $("source-after").textContent = "";
  if (!position) {
    $("source-text").textContent = "(this server guards its training text: its source isn't shown)";
    return;
  }
  const length = Math.min(parseInt(node.getAttribute("data-length"), 10) || 64, 4096);
  try {
    const q = new URLSearchParams({ model, position, length });
    const s = await getJSON("/api/source?" + q.toString());
    $("source-title").textContent = `${s.document}, from character ${s.offset}`;
    $("source-before").textContent = s.before;
    $("source-text").textContent = s.text;
    $("source-after").textContent = s.after;
    showError("");
  } catch (e) {
    showError("source: " + e.message);
  }
}
