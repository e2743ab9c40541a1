"""Markup to prose: the text a reader of the rendered page reads, and a count of what was taken out.

    cleaned = to_prose(post, "markdown", code="drop", images="drop", tables="keep")
    cleaned.text     # the prose
    cleaned.counts   # Counter: "links reduced to their text" -> 12, "footnote markers removed" -> 3, ...

    front_matter_title("---\\ntitle: Hello\\n---\\nBody")   # -> "Hello" (for --titles keep)

Front matter goes first. Jekyll runs Liquid before Markdown, so Liquid goes next: tags
and outputs are removed, the prose a tag captures stays, `{% raw %}` keeps its content
and `{% highlight %}` becomes a code block (templated=False skips both, for text a
platform stored rather than a static site's file). Then Markdown is parsed, not
pattern-matched (markdown_text: markdown-it-py), and HTML goes through html.parser
(html_text). Nothing here reads files; the readers do, and documents.py normalises line
endings and Unicode around this.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field

import yaml

from bricklm.config import CODE_MODES, IMAGE_MODES, TABLE_MODES
from bricklm.errors import UserError
from bricklm.text.html_text import html_text
from bricklm.text.markdown_text import CODE, PLACEHOLDER, drop_liquid_lines, markdown_text

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

FRONT_MATTER = "front matter removed"
LIQUID = "Liquid tags and blocks removed"


@dataclass
class Cleaned:
    """The prose of one document and, per kind of markup, how many were removed or converted."""

    text: str
    counts: Counter = field(default_factory=Counter)


def to_prose(
    text: str, kind: str = "markdown", *, templated: bool = True, code="drop", images="drop", tables="keep"
) -> Cleaned:
    """Render "markdown" or "html" text as prose. Line endings must already be "\\n".

    templated: remove front matter and Liquid first (a static site's file); code: "drop" or "keep"
    fenced, indented and `{% highlight %}` code; images: "drop" them or keep their "alt" text;
    tables: "keep" each row as a line, or "drop" them.
    """
    check_options(code, images, tables)
    counts: Counter = Counter()
    body, highlights = text, frozenset()
    if templated:
        body = strip_front_matter(text)
        counts[FRONT_MATTER] += body != text
    # A U+FFFC of the writer's own marks an embedded object, which has no text; ours marks Liquid.
    body = body.replace(PLACEHOLDER, "")
    if templated:
        body, highlights = _remove_liquid(body, kind, code, counts)
    if kind == "html":
        prose = drop_liquid_lines(html_text(body, counts, images))
    else:
        prose = markdown_text(body, counts, code=code, images=images, tables=tables, highlights=highlights)
    return Cleaned(prose.replace(PLACEHOLDER, ""), +counts)


def check_options(code="drop", images="drop", tables="keep") -> None:
    """Raise a UserError naming the option whose value is not one of its modes."""
    for name, value, modes in (
        ("code", code, CODE_MODES),
        ("images", images, IMAGE_MODES),
        ("tables", tables, TABLE_MODES),
    ):
        if value not in modes:
            raise UserError(f"{name} must be one of {', '.join(modes)}, not {value!r}")


def strip_front_matter(text: str) -> str:
    """Remove YAML (---) or TOML (+++) front matter, only at the very start of the text.

    A `---` later in the body is a horizontal rule and is left alone; so is an
    opening fence that is never closed.
    """
    return split_front_matter(text)[2]


def split_front_matter(text: str) -> tuple[str | None, str, str]:
    """(fence, front matter, body): fence is "---" or "+++", or None when text opens with no closed front matter
    (then front matter is "" and body is text)."""
    first, _, rest = text.partition("\n")
    fence = first.rstrip()
    if fence not in ("---", "+++"):
        return None, "", text
    closers = ("---", "...") if fence == "---" else ("+++",)
    pos = 0
    while pos <= len(rest):
        end = rest.find("\n", pos)
        line = rest[pos:] if end == -1 else rest[pos:end]
        if line.rstrip() in closers:
            return fence, rest[:pos], "" if end == -1 else rest[end + 1 :]
        if end == -1:
            break
        pos = end + 1
    return None, "", text


def front_matter_title(text: str) -> str | None:
    """The `title` of a file's YAML (---) or TOML (+++) front matter, or None (no front matter, no title,
    or front matter its own parser cannot read: the file is still read, only without a title)."""
    fence, front, _ = split_front_matter(text)
    if fence is None:
        return None
    try:
        values = yaml.safe_load(front) if fence == "---" else tomllib.loads(front)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, RecursionError, ValueError):
        return None
    title = values.get("title") if isinstance(values, dict) else None
    if isinstance(title, bool) or not isinstance(title, (str, int, float)):
        return None
    return str(title)


# ---------------------------------------------------------------- Liquid, before anything else

# Openers of the blocks that Liquid removal must see whole: fenced code (kept verbatim, as Jekyll
# users escape Liquid there with {% raw %}) and Liquid's own paired blocks.
_BLOCK_OPENER = re.compile(
    r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$"
    r"|\{%-?\s*(?P<tag>highlight|raw|comment)\b[^%]*?-?%\}",
    re.MULTILINE,
)
_LIQUID_CLOSER = {tag: re.compile(r"\{%-?\s*end" + tag + r"\s*-?%\}") for tag in ("highlight", "raw", "comment")}
_RAW_TAG = re.compile(r"\{%-?\s*(?:end)?raw\s*-?%\}")
# Tags and outputs stop at the next opener of their kind and never cross a blank line, so one
# stray "{{" cannot eat the rest of a post and a line of unclosed openers is cleaned in linear time.
_NO_BLANK = r"(?:[^\n]|\n(?![ \t]*\n))"
_LIQUID = re.compile(r"\{%(?:(?!\{%)" + _NO_BLANK + r")*?%\}|\{\{(?:(?!\{\{)" + _NO_BLANK + r")*?\}\}")


def _remove_liquid(text: str, kind: str, code: str, counts: Counter) -> tuple[str, frozenset[int]]:
    """Remove Liquid; return the text and the line numbers where a highlight block's code fence now opens."""
    out, highlights, lines = [], set(), 0

    def add(piece: str) -> None:
        nonlocal lines
        out.append(piece)
        lines += piece.count("\n")

    for part_kind, part in _split_blocks(text, fences=kind == "markdown"):
        if part_kind == "prose":
            part, n = _LIQUID.subn(lambda m: PLACEHOLDER if m.group(0).startswith("{{") else "", part)
            counts[LIQUID] += n
            add(part)
            continue
        counts[LIQUID] += part_kind != "fence"
        if part_kind == "fence":
            add(_RAW_TAG.sub("", part))  # Liquid runs before Markdown, so readers never see these
        elif part_kind == "raw":
            add(part)
        elif part_kind == "highlight" and kind == "html":
            counts[CODE[code]] += 1
            add(html.escape(part) if code == "keep" else "")
        elif part_kind == "highlight":
            # A fence of its own, longer than any backtick run inside, so the parser sees one code block.
            fence = "`" * max(3, max((len(run) for run in re.findall("`+", part)), default=0) + 1)
            highlights.add(lines + 1)
            add(f"\n{fence}\n{part.strip(chr(10))}\n{fence}\n")
    return "".join(out), frozenset(highlights)


def _split_blocks(text: str, fences: bool):
    """Yield ("prose" | "fence" | "highlight" | "raw" | "comment", text) pieces in order.

    A fence comes whole (fence lines included); the Liquid blocks come as their
    content. An unclosed block runs to the end, as in Markdown.
    """
    pos = 0
    while True:
        m = _BLOCK_OPENER.search(text, pos)
        while m and m.group("fence") and not _is_fence(m, fences):
            m = _BLOCK_OPENER.search(text, m.end())
        if not m:
            yield "prose", text[pos:]
            return
        yield "prose", text[pos : m.start()]
        if m.group("fence"):
            fence = m.group("fence")
            closer = re.compile(rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
            c = closer.search(text, m.end() + 1)
            end = c.end() if c else len(text)
            yield "fence", text[m.start() : end]
        else:
            c = _LIQUID_CLOSER[m.group("tag")].search(text, m.end())
            inner_end, end = (c.start(), c.end()) if c else (len(text), len(text))
            yield m.group("tag"), text[m.end() : inner_end]
        pos = end


def _is_fence(m: re.Match, fences: bool) -> bool:
    # A backtick fence's info string can't contain a backtick (CommonMark), so "```a```" is inline code.
    return fences and not (m.group("fence")[0] == "`" and "`" in m.group("info"))
