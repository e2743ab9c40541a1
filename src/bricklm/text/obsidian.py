"""Obsidian's Markdown, as markdown-it-py rules: what a note's reading view shows, without the syntax.

    md = MarkdownIt("commonmark").use(obsidian_plugin)      # markdown_text's parser does this
    md.parse("See [[Note|my note]] and ![[photo.png]].")    # a "wikilink" token ("my note") and an "embed"

    [[Note]] -> Note        [[Note|alias]] -> alias        [[Note#Heading]] -> Note     [[#Heading]] -> Heading
    ![[Note]] -> nothing    (an embedded note, image or PDF has no text of its own here)
    > [!note]- Title        -> the callout's title and text as plain lines: no "> ", no marker
    %%a comment%%           -> nothing, inline or as a block of lines (Obsidian hides them)

These are rules of the parser, so they never apply inside code spans or code blocks. None of
this is CommonMark, so no other Markdown writes it and every Markdown file can be read with
it. A `%%` that is never closed stays as written. The renderer (markdown_text) writes the
tokens out and counts them under the names below.
"""

from __future__ import annotations

import re

WIKILINKS = "wikilinks reduced to their text"
EMBEDS = "embeds dropped"
CALLOUTS = "callout markers removed"
COMMENTS = "comments (%%) removed"
MAX_LINK = 500  # a longer [[...]] is not a link; the bound keeps a line of "[[" linear
_CALLOUT = re.compile(r"\[!([^\]\s]{1,60})\]([+-]?)[ \t]*")  # the marker line of a callout, matched on one line
_UNCLOSED = "obsidian_unclosed_comment"  # env: end line -> the first line from which no comment closes


def obsidian_plugin(md) -> None:
    md.inline.ruler.before("link", "wikilink", _wikilink)
    md.inline.ruler.before("link", "obsidian_comment", _comment_inline)
    md.block.ruler.before(
        "paragraph", "obsidian_comment", _comment_block, {"alt": ["paragraph", "reference", "blockquote", "list"]}
    )
    md.core.ruler.after("block", "callout", _callouts)


def link_text(inner: str) -> str:
    """What a wikilink shows: its alias, else its note's name without "#heading" or "^block"."""
    target, bar, alias = inner.replace("\\|", "|").partition("|")
    if bar and alias.strip():
        return alias.strip()
    note = target.split("#")[0].split("^")[0].strip()
    return note or target.strip().lstrip("#^").strip()  # [[#Heading]] shows the heading


def _wikilink(state, silent: bool) -> bool:
    src, pos, end = state.src, state.pos, state.posMax
    embed = src.startswith("![[", pos, end)
    if not embed and not src.startswith("[[", pos, end):
        return False
    start = pos + (3 if embed else 2)
    close = src.find("]]", start, min(end, start + MAX_LINK))
    inner = src[start:close] if close != -1 else ""
    if not inner.strip() or "[" in inner or "]" in inner or "\n" in inner:
        return False
    if not silent:
        token = state.push("embed" if embed else "wikilink", "", 0)
        token.content = "" if embed else link_text(inner)
    state.pos = close + 2
    return True


def _comment_inline(state, silent: bool) -> bool:
    src, pos = state.src, state.pos
    if not src.startswith("%%", pos, state.posMax):
        return False
    close = src.find("%%", pos + 2, state.posMax)
    if close == -1:
        return False
    if not silent:
        state.push("obsidian_comment", "", 0)
    state.pos = close + 2
    return True


def _line(state, n: int) -> str:
    return state.src[state.bMarks[n] + state.tShift[n] : state.eMarks[n]]


def _comment_block(state, start_line: int, end_line: int, silent: bool) -> bool:
    # A line opening with "%%" that does not close on it hides every line up to the one that does.
    if state.sCount[start_line] - state.blkIndent >= 4:
        return False
    first = _line(state, start_line)
    if not first.startswith("%%") or "%%" in first[2:]:
        return False
    unclosed = state.env.setdefault(_UNCLOSED, {})
    if start_line >= unclosed.get(end_line, end_line):
        return False  # an earlier search from above here found no closing line: none is left
    close = next((n for n in range(start_line + 1, end_line) if "%%" in _line(state, n)), None)
    if close is None:
        unclosed[end_line] = start_line
        return False
    if not silent:
        token = state.push("obsidian_comment", "", 0)
        token.map = [start_line, close + 1]
    state.line = close + 1
    return True


def _callouts(state) -> None:
    """Mark each blockquote that opens with "[!type]" as a callout and take the marker off its first line."""
    tokens = state.tokens
    for i in range(len(tokens) - 2):
        quote, para, inline = tokens[i : i + 3]
        if quote.type != "blockquote_open" or para.type != "paragraph_open" or inline.type != "inline":
            continue
        m = _CALLOUT.match(inline.content)
        if not m:
            continue
        quote.meta["callout"] = m.group(1).lower()
        title, newline, rest = inline.content[m.end() :].partition("\n")
        inline.content = title.strip() + newline + rest if title.strip() else rest
