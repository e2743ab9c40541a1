"""Markdown to prose: markdown-it-py's token stream written out as the text a reader reads.

    counts = Counter()
    markdown_text("# Hi\n\nSee [the docs](x)[^1].\n\n[^1]: A note.", counts)  # -> "Hi\n\nSee the docs.\n\nA note."

The parser is CommonMark with tables, strikethrough, footnotes and definition lists,
plus rules of our own for attribute lists (kramdown's `{: .class}` and `{:toc}`, and
`{ key=value }` right after a link or image), emoji shortcodes, footnote markers whose
note is missing, code spans kept as typed, and Obsidian's wikilinks, embeds, callouts
and comments (obsidian.py).
Paragraphs, headings and list items become text ("- " and "1. " markers stay, as in a
plain-text note; so does "> " before a quote), code spans stay verbatim, links become
their text, footnote texts follow the post without markers, table rows become lines
of comma- (or semicolon-) separated cells, and HTML goes through html_text.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.rules_inline.backticks import backtick
from mdit_py_plugins.deflist import deflist_plugin
from mdit_py_plugins.footnote import footnote_plugin

from bricklm.text.html_text import IMAGES, html_text
from bricklm.text.obsidian import CALLOUTS, COMMENTS, EMBEDS, WIKILINKS, obsidian_plugin

# Stands in for a Liquid output ({{ ... }}) while Markdown is parsed, so that `**{{ x }}**` is still
# emphasis (not four stars) and a line built only from Liquid can be recognised and dropped.
PLACEHOLDER = "\ufffc"
MAX_ATTRIBUTE_LIST = 300  # a longer "{: ...}" is prose, not markup; the bound keeps the scan linear

CODE = {"drop": "code blocks dropped", "keep": "code blocks kept"}
HEADINGS = "heading markers removed"
EMPHASIS = "emphasis markers removed"
LINKS = "links reduced to their text"
REFERENCES = "link reference definitions removed"
FOOTNOTE_MARKERS = "footnote markers removed"
FOOTNOTE_TEXTS = "footnote texts moved to the end"
ATTRIBUTE_LISTS = "attribute lists removed"
TOC_LISTS = "table-of-contents lists removed"
TABLE_ROWS = {"keep": "table rows written as lines", "drop": "table rows dropped"}
ESCAPES = "backslash escapes resolved"
ENTITIES = "entities decoded"
EMOJI = "emoji shortcodes turned into emoji"


def markdown_text(
    text: str, counts: Counter, *, code="drop", images="drop", tables="keep", highlights: frozenset[int] = frozenset()
) -> str:
    """The prose of Markdown text; counts gets what was removed or converted.

    code: "drop"/"keep" code blocks; highlights: lines where a fence made from a Liquid
    highlight block opens (kept as bare code); images: "drop"/"alt"; tables: "keep"/"drop".
    """
    env: dict = {}
    tokens = _parser().parse(text, env)
    counts[REFERENCES] += len(env.get("references", {}))
    return _Renderer(counts, code, images, tables, highlights).render(tokens)


def opening_heading(text: str) -> tuple[str | None, str]:
    """(the heading text opens with, as prose; the text after it), or (None, text) when it opens otherwise.

    A notebook's title is its first cell's opening heading: opening_heading("# Hi\\n\\nBody") -> ("Hi", "\\nBody").
    """
    tokens = _parser().parse(text, {})
    if not tokens or tokens[0].type != "heading_open" or not tokens[0].map:
        return None, text
    lines = text.split("\n")
    end = tokens[0].map[1]
    return markdown_text("\n".join(lines[:end]), Counter()), "\n".join(lines[end:])


def drop_liquid_lines(text: str) -> str:
    """Drop the lines built from Liquid outputs alone, a loop's "- **{{ title }}** — {{ date }}": no prose is left."""
    if PLACEHOLDER not in text:
        return text
    return "\n".join(line for line in text.split("\n") if PLACEHOLDER not in line or any(c.isalnum() for c in line))


# ---------------------------------------------------------------- the parser and our rules


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"]).use(footnote_plugin).use(deflist_plugin)
    md.use(obsidian_plugin)
    md.disable(["footnote_inline", "text_join"])  # ^[...] is not kramdown; text_join would hide escapes
    md.inline.ruler.at("backticks", _verbatim_code_span)
    md.inline.ruler.before("link", "attribute_list", _attribute_list_inline)
    md.inline.ruler.before("link", "emoji", _emoji_inline)
    md.inline.ruler.after("footnote_ref", "undefined_footnote_ref", _undefined_footnote_inline)
    md.block.ruler.before(
        "paragraph", "attribute_list", _attribute_list_block, {"alt": ["paragraph", "reference", "blockquote", "list"]}
    )
    return md


def _verbatim_code_span(state, silent: bool) -> bool:
    # CommonMark trims and folds a code span's content; the corpus keeps it as the writer typed it.
    start, count = state.pos, len(state.tokens)
    if not backtick(state, silent):
        return False
    if not silent and len(state.tokens) > count and state.tokens[-1].type == "code_inline":
        state.tokens[-1].meta["source"] = state.src[start : state.pos]
    return True


def _attribute_list(src: str, pos: int, end: int) -> int:
    """End of a kramdown attribute list ("{: ...}", "{:toc}", "{::options .../}") at src[pos], or -1."""
    if not src.startswith("{:", pos, end):
        return -1
    close = src.find("}", pos + 2, min(end, pos + MAX_ATTRIBUTE_LIST))
    return -1 if close == -1 or "\n" in src[pos:close] else close + 1


# Pandoc-style attributes right after a link, image, code span or emphasis: "[a](b){ rel=nofollow }".
_SPAN_ATTRIBUTES = re.compile(r"\{[ \t]*(?:(?:[#.][\w-]+|[\w:-]+=(?:\"[^\"\n]*\"|'[^'\n]*'|[\w:-]+))[ \t]*)+\}")
_SPAN_ENDS = {"link_close", "image", "code_inline", "em_close", "strong_close", "s_close"}


def _attribute_list_inline(state, silent: bool) -> bool:
    end = _attribute_list(state.src, state.pos, state.posMax)
    if end == -1 and not state.pending and state.tokens and state.tokens[-1].type in _SPAN_ENDS:
        m = _SPAN_ATTRIBUTES.match(state.src, state.pos, min(state.posMax, state.pos + MAX_ATTRIBUTE_LIST))
        end = m.end() if m else -1
    if end == -1:
        return False
    if not silent:
        token = state.push("attribute_list", "", 0)
        token.content = state.src[state.pos : end]
    state.pos = end
    return True


def _attribute_list_block(state, start_line: int, end_line: int, silent: bool) -> bool:
    # kramdown puts a block's attribute list on the line after it, so it must be able to end a paragraph.
    if state.sCount[start_line] - state.blkIndent >= 4:
        return False
    begin, line_end = state.bMarks[start_line] + state.tShift[start_line], state.eMarks[start_line]
    line = state.src[begin:line_end].rstrip()
    if _attribute_list(line, 0, len(line)) != len(line):
        return False
    if not silent:
        token = state.push("attribute_list", "", 0)
        token.content, token.map = line, [start_line, start_line + 1]
    state.line = start_line + 1
    return True


_FOOTNOTE_REF = re.compile(r"\[\^[^\]\s]{1,100}\]")


def _undefined_footnote_inline(state, silent: bool) -> bool:
    # A marker whose note was never written: kramdown prints it as is, but it is still markup.
    m = _FOOTNOTE_REF.match(state.src, state.pos, state.posMax)
    if not m:
        return False
    if not silent:
        state.push("undefined_footnote_ref", "", 0)
    state.pos = m.end()
    return True


_SHORTCODE = re.compile(r":[a-z0-9_+-]{1,60}:")


@cache
def _emoji_by_shortcode() -> dict[str, str]:
    import emoji  # its tables take a moment to load, so only when a post has a ":word:"

    table = {}
    # Several forms share a name (with and without the emoji variation selector): the fully qualified one wins.
    for char, data in sorted(
        emoji.EMOJI_DATA.items(), key=lambda item: item[1]["status"] != emoji.STATUS["fully_qualified"]
    ):
        for name in [data["en"], *data.get("alias", [])]:
            table.setdefault(name, char)
    return table


def _emoji_inline(state, silent: bool) -> bool:
    if state.src[state.pos] != ":":
        return False
    m = _SHORTCODE.match(state.src, state.pos, state.posMax)
    char = m and _emoji_by_shortcode().get(m.group(0))
    if not char:
        return False
    if not silent:
        state.push("emoji", "", 0).content = char
    state.pos = m.end()
    return True


# ---------------------------------------------------------------- tokens to prose

_LEAVES = {"paragraph_open", "heading_open", "dt_open"}
_CONVERTED = {"emoji": EMOJI, "wikilink": WIKILINKS}
_EMPHASIS = {"em_open", "strong_open", "s_open"}
_MARKERS = {
    "footnote_ref": FOOTNOTE_MARKERS,
    "undefined_footnote_ref": FOOTNOTE_MARKERS,
    "attribute_list": ATTRIBUTE_LISTS,
    "embed": EMBEDS,
    "obsidian_comment": COMMENTS,
}


class _Container:
    """A blockquote or list item: what its first line starts with, and what its other lines do."""

    def __init__(self, first: str, rest: str):
        self.first, self.rest, self.started = first, rest, False


class _Renderer:
    """Walks markdown-it's flat token stream once and writes prose lines; see markdown_text."""

    def __init__(self, counts: Counter, code: str, images: str, tables: str, highlights: frozenset[int]):
        self.counts, self.code, self.images, self.tables, self.highlights = counts, code, images, tables, highlights
        self.lines: list[str] = []
        self.stack: list[_Container] = []
        self.prev_end: int | None = None  # source line after the last block written
        self.new_group = False

    def render(self, tokens) -> str:
        skip = _toc_lists(tokens)
        i = 0
        while i < len(tokens):
            t = tokens[i]
            if i in skip:
                self.counts[TOC_LISTS] += 1
                i = skip[i]
            elif t.type in _LEAVES:
                self.counts[HEADINGS] += t.type == "heading_open"
                self._leaf(tokens[i + 1], t.map)
                i += 2
            elif t.type == "list_item_open":
                marker = f"{t.info}{t.markup} "
                self.stack.append(_Container(marker, " " * len(marker)))
            elif t.type == "blockquote_open" and t.meta.get("callout"):
                self.counts[CALLOUTS] += 1  # a callout is a box on the page, not a quote: no "> "
                self.stack.append(_Container("", ""))
            elif t.type == "blockquote_open":
                self.stack.append(_Container("> ", "> "))
            elif t.type in ("list_item_close", "blockquote_close"):
                self.stack.pop()
            elif t.type in ("fence", "code_block"):
                self._code(t)
            elif t.type == "html_block":
                self._write(html_text(t.content, self.counts, self.images), t.map)
            elif t.type == "hr":
                self._write("---", t.map)
            elif t.type == "table_open":
                i = self._table(tokens, i)
            elif t.type in ("attribute_list", "obsidian_comment"):
                self.counts[_MARKERS[t.type]] += 1
            elif t.type == "footnote_open":
                self.counts[FOOTNOTE_TEXTS] += 1
                self.new_group = True
            i += 1
        return "\n".join(self.lines)

    def _leaf(self, inline, map_) -> None:
        self._write(self._inline(inline.children or []), map_)

    def _code(self, t) -> None:
        self.counts[CODE[self.code]] += 1
        if self.code == "drop":
            return
        if t.type == "code_block":
            text = "\n".join("    " + line for line in t.content.rstrip("\n").split("\n"))
        elif t.map and t.map[0] in self.highlights:
            text = t.content.rstrip("\n")  # {% highlight %} blocks keep just their code, as they always have
        else:
            text = f"{t.markup}{t.info}\n{t.content}{t.markup}"
        self._write(text, t.map)

    def _table(self, tokens, i: int) -> int:
        """Write the table that opens at tokens[i] one row per line; return the index of its close."""
        rows, row, start = [], [], tokens[i].map
        while tokens[i].type != "table_close":
            t = tokens[i]
            if t.type == "inline":
                row.append(" ".join(self._inline(t.children or []).split()))
            elif t.type == "tr_close":
                rows.append([cell for cell in row if cell.replace(PLACEHOLDER, "").strip()])
                row = []
            i += 1
        self.counts[TABLE_ROWS[self.tables]] += len(rows)
        if self.tables == "keep":
            sep = "; " if any("," in cell for r in rows for cell in r) else ", "
            self._write("\n".join(sep.join(r) for r in rows if r), start)
        return i

    def _inline(self, children) -> str:
        has_html = any(t.type == "html_inline" for t in children)
        parts, after_marker = [], False
        for t in children:
            kind = t.type
            if kind == "html_inline":
                parts.append(t.content)
                continue
            if kind in ("text", "text_special", "emoji", "wikilink"):
                if kind != "text":
                    self.counts[_CONVERTED.get(kind) or (ESCAPES if t.info == "escape" else ENTITIES)] += 1
                piece = t.content
            elif kind in ("softbreak", "hardbreak"):
                piece = "\n"
            elif kind == "code_inline":
                piece = t.meta.get("source", t.markup + t.content + t.markup)
            elif kind == "image":
                self.counts[IMAGES[self.images]] += 1
                piece = self._inline(t.children or []) if self.images == "alt" else ""
            elif kind in _MARKERS:
                self.counts[_MARKERS[kind]] += 1
                after_marker = bool(parts) and parts[-1].endswith(" ")
                continue
            else:
                self.counts[LINKS] += kind == "link_open"
                self.counts[EMPHASIS] += kind in _EMPHASIS
                continue
            if after_marker and piece[:1] in (" ", ".", ",", ";", ":", "!", "?", ")"):
                # "good sense [^4] for" and "a word [^5]." lose the marker and the space before it.
                parts[-1] = parts[-1].rstrip(" ")
            after_marker = False
            # Inline HTML is parsed together with the text around it, so that text must be escaped.
            parts.append(html.escape(piece, quote=False) if has_html else piece)
        text = "".join(parts)
        return html_text(text, self.counts, self.images) if has_html else text

    def _write(self, text: str, map_) -> None:
        """Add one block; a blank line goes before it where the source had a gap (or anything dropped)."""
        text = drop_liquid_lines(text).strip("\n")
        if not text.strip():
            return
        if self.lines and (self.new_group or not map_ or self.prev_end is None or map_[0] > self.prev_end):
            self.lines.append("".join(c.rest for c in self.stack if c.started).rstrip())
        for line in text.split("\n"):
            self.lines.append("".join(self._prefix(c) for c in self.stack) + line)
        self.prev_end = max(map_[1], map_[0] + 1) if map_ else None
        self.new_group = False

    @staticmethod
    def _prefix(c: _Container) -> str:
        if c.started:
            return c.rest
        c.started = True
        return c.first


def _toc_lists(tokens) -> dict[int, int]:
    """{open index: close index} of the lists kramdown replaces with a table of contents ({:toc})."""
    tocs, opens = {}, []  # opens: [index, has a {:toc} inside] of each list open around here
    for i, t in enumerate(tokens):
        if t.type in ("bullet_list_open", "ordered_list_open"):
            opens.append([i, False])
        elif t.type in ("bullet_list_close", "ordered_list_close"):
            start, marked = opens.pop()
            if marked or (i + 1 < len(tokens) and _is_toc(tokens[i + 1])):
                tocs[start] = i
        elif opens and t.type == "inline" and any(_is_toc(c) for c in t.children or []):
            opens[-1][1] = True
    return tocs


def _is_toc(t) -> bool:
    return t.type == "attribute_list" and t.content[2:-1].strip() == "toc"
