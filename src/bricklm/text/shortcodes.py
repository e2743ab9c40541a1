"""WordPress shortcodes in a post's stored HTML, resolved the way a reader of the page would meet them.

    counts = Counter()
    expand_shortcodes('[caption id="a" width="300"]<img src="cat.jpg"> My cat[/caption] [gallery ids="1,2"]', counts)
    # -> '<img src="cat.jpg"> My cat '    (the HTML path then drops the image)

`[caption]` keeps its caption (the text it encloses, or an old-style caption="..." attribute);
`[gallery]`, `[embed]`, `[audio]`, `[video]` and the other media ones in MEDIA go with what they
enclose; `[code]` and `[sourcecode]` are code blocks (dropped, or kept as a <pre> with code="keep");
any other shortcode loses its tags and keeps the text it encloses; `[[name]]` is WordPress's way
of writing a literal `[name]`. A bracketed word that is not a known shortcode, has no attributes,
no `/]` and no closing tag is prose ("[sic]", "[1]") and stays: WordPress itself prints it.

WordPress parses these at render time; this is a scanner of the same syntax, one pass over
the text, with a bound on a tag's length so a line of "[" stays linear.
"""

from __future__ import annotations

import html
import re
import shlex
from collections import Counter
from dataclasses import dataclass

from bricklm.text.markdown_text import CODE

SHORTCODES = "shortcodes removed"
CAPTIONS = {"caption", "wp_caption"}
MEDIA = {"gallery", "embed", "audio", "video", "playlist", "youtube", "vimeo", "wpvideo", "soundcloud", "spotify"}
MEDIA |= {"slideshow", "tweet", "instagram", "googlemaps", "contact-form", "contact-field"}
CODES = {"code", "sourcecode"}
MAX_TAG = 1000  # a longer "[name ...]" is not a shortcode; the bound keeps the scan linear
_NAME = re.compile(r"[A-Za-z][\w-]{0,60}")


@dataclass
class _Tag:
    name: str
    attrs: str
    closing: bool
    self_closing: bool
    end: int  # index just past its "]"


def _tag(text: str, i: int) -> _Tag | None:
    """The shortcode tag whose "[" is at text[i], or None."""
    j = i + 1
    closing = text.startswith("/", j)
    m = _NAME.match(text, j + closing)
    if not m or (m.end() < len(text) and text[m.end()] not in " \t\n]/"):
        return None
    close = text.find("]", m.end(), m.end() + MAX_TAG)
    attrs = text[m.end() : close] if close != -1 else "["
    if "[" in attrs:
        return None
    self_closing = attrs.rstrip().endswith("/")
    return _Tag(m.group(0).lower(), attrs.rstrip().rstrip("/").strip(), closing, self_closing, close + 1)


def caption_attribute(attrs: str) -> str:
    """An old-style caption="..." attribute's text, or ""."""
    try:
        words = shlex.split(attrs)
    except ValueError:  # an unbalanced quote: WordPress would not read it either
        return ""
    return next((w.partition("=")[2] for w in words if w.startswith("caption=")), "")


class _Scan:
    """One pass over a post's text; closers[name] caches where the last "[/name]" is (-1: none)."""

    def __init__(self, text: str, counts: Counter, code: str):
        self.text, self.counts, self.code = text, counts, code
        self.closers: dict[str, int] = {}
        self.open: Counter = Counter()  # names of unknown shortcodes whose closing tag is still to come

    def closes_later(self, tag: _Tag) -> bool:
        if tag.name not in self.closers:
            self.closers[tag.name] = self.text.rfind(f"[/{tag.name}]")
        return self.closers[tag.name] >= tag.end

    def run(self) -> str:
        text, out, pos = self.text, [], 0
        while (i := text.find("[", pos)) != -1:
            out.append(text[pos:i])
            pos = i + 1
            if text.startswith("[[", i) and (inner := _tag(text, i + 1)) and text.startswith("]", inner.end):
                out.append(text[i + 1 : inner.end])  # [[gallery]] is how WordPress writes "[gallery]"
                pos = inner.end + 1
                continue
            tag = _tag(text, i)
            if tag is None:
                out.append("[")
                continue
            piece, pos = self.resolve(tag, i)
            out.append(piece)
        out.append(text[pos:])
        return "".join(out)

    def resolve(self, tag: _Tag, i: int) -> tuple[str, int]:
        """What a tag at text[i] becomes, and where the scan goes on."""
        name, known = tag.name, tag.name in CAPTIONS | MEDIA | CODES
        encloses = not tag.closing and not tag.self_closing and self.closes_later(tag)
        if tag.closing:
            if not known and not self.open[name]:
                return self.text[i : tag.end], tag.end  # "[/x]" that closes nothing is text
            self.open[name] -= bool(self.open[name])
            self.counts[SHORTCODES] += 1
            return "", tag.end
        if not known and not (encloses or tag.self_closing or "=" in tag.attrs):
            return self.text[i : tag.end], tag.end  # prose in brackets: "[sic]"
        self.counts[SHORTCODES] += 1
        if name in CAPTIONS and encloses:
            self.open[name] += 1
            # As WordPress's caption does: the image (and its link) first, the caption on a line after it.
            rest = self.text[tag.end :].lstrip()
            while rest.startswith("<") and (close := rest.find(">")) != -1:
                rest = rest[close + 1 :].lstrip()
            start = len(self.text) - len(rest)
            return self.text[tag.end : start].rstrip() + "\n" + caption_attribute(tag.attrs), start
        if name in CAPTIONS or not (name in MEDIA or name in CODES):
            self.open[name] += encloses
            caption = caption_attribute(tag.attrs) if name in CAPTIONS else ""
            return (f"{caption} " if caption else ""), tag.end
        if not encloses:
            return "", tag.end
        close = self.text.find(f"[/{name}]", tag.end)
        after = close + len(name) + 3
        if name in MEDIA:
            return "", after
        self.counts[CODE[self.code]] += 1
        inner = html.escape(self.text[tag.end : close].strip("\n"), quote=False)
        return (f"<pre>{inner}</pre>" if self.code == "keep" else ""), after


def expand_shortcodes(text: str, counts: Counter, code: str = "drop") -> str:
    """text with its WordPress shortcodes resolved (see the module's docstring); counts gets how many went."""
    if "[" not in text:
        return text
    return _Scan(text, counts, code).run()
