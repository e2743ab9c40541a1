"""HTML to text, through the standard library's html.parser: for .html files and HTML inside Markdown.

    counts = Counter()
    html_text("<p>Tom &amp; <b>Jerry</b></p><script>x()</script>", counts)  # -> "\nTom & Jerry\n"
    counts  # {"HTML tags removed": 6, "scripts and styles removed": 1}

Tags and comments (WordPress's block-editor comments, `<!-- wp:... -->`, too) go, block tags
become line breaks, script and style contents go, entities are decoded; with images="alt" an
<img> leaves its alt text.
"""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

IMAGES = {"drop": "images dropped", "alt": "images replaced by their alt text"}
HTML_TAGS = "HTML tags removed"
HTML_COMMENTS = "HTML comments removed"
BLOCK_COMMENTS = "block-editor comments removed"  # WordPress's <!-- wp:paragraph --> and <!-- /wp:paragraph -->
SCRIPTS = "scripts and styles removed"

_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tr ul".split()
)
# A complete tag, comment opener, declaration or processing instruction at a "<". Tags stop at
# the next "<", so finding them is linear; html.parser itself rescans an unclosed "<a ..." for
# every later character (quadratic), so a "<" that opens nothing complete is escaped first.
_TAG = re.compile(r"</?[A-Za-z][^\s/<>]*(?:\s(?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*)?/?>|<![^<>-][^<>]*>|<\?[^<>]*>")


def html_text(source: str, counts: Counter, images: str = "drop") -> str:
    """The text of an HTML fragment or page; counts gets what was removed. images: "drop" or "alt"."""
    parser = _HtmlText(counts, images)
    parser.feed(_escape_unopened(source))
    parser.close()
    return "".join(parser.parts)


def _escape_unopened(source: str) -> str:
    """source with every "<" that opens no complete tag, comment or declaration written as "&lt;"."""
    out, pos, comments_close = [], 0, True
    while (lt := source.find("<", pos)) != -1:
        end = -1
        if source.startswith("<!--", lt):
            close = source.find("-->", lt + 4) if comments_close else -1
            comments_close = close != -1  # no "-->" after this opener means none after any later one either
            end = close + 3 if close != -1 else -1
        elif m := _TAG.match(source, lt):
            end = m.end()
        out += [source[pos:lt], source[lt:end] if end != -1 else "&lt;"]
        pos = end if end != -1 else lt + 1
    out.append(source[pos:])
    return "".join(out)


class _HtmlText(HTMLParser):
    """Collects the text of what it is fed in parts, and counts the markup it drops."""

    def __init__(self, counts: Counter, images: str):
        super().__init__(convert_charrefs=True)
        self.counts, self.images, self.parts, self.skipping = counts, images, [], None

    def handle_starttag(self, tag, attrs):
        self.counts[HTML_TAGS] += 1
        if tag in ("script", "style"):
            self.counts[SCRIPTS] += 1
            self.skipping = tag
        elif tag == "img":
            self.counts[IMAGES[self.images]] += 1
            if self.images == "alt":
                self.parts.append(dict(attrs).get("alt") or "")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        self.counts[HTML_TAGS] += 1
        if tag == self.skipping:
            self.skipping = None
        elif tag in _BLOCK_TAGS and not self.skipping:
            self.parts.append("\n")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)  # "<br/>" is one tag, one line break
        if self.skipping == tag:
            self.skipping = None

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)

    def handle_comment(self, data):
        self.counts[BLOCK_COMMENTS if data.strip().startswith(("wp:", "/wp:")) else HTML_COMMENTS] += 1

    def handle_decl(self, decl):
        self.counts[HTML_TAGS] += 1

    handle_pi = unknown_decl = handle_decl
