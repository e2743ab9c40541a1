"""A platform's chrome cut out of an HTML page before the HTML path reads it: subscribe boxes, bylines, headers.

    page = prune(source, keep=lambda tag, attrs: attrs.get("data-field") == "body",
                 drop=lambda tag, attrs: has_class(attrs, "button-wrapper"))
    page.html      # the HTML inside the kept elements, without the dropped ones (whole subtrees)
    page.dropped   # how many elements were dropped

Parsed by the standard library's html.parser, never by patterns over the markup; what is kept
is written back as HTML (start tags as written, text escaped) for html_text to read.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

Match = Callable[[str, dict], bool]
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


@dataclass
class Pruned:
    html: str
    dropped: int


def has_class(attrs: dict, *names: str) -> bool:
    """True if the element's class attribute holds any of names."""
    return bool(set((attrs.get("class") or "").split()) & set(names))


def prune(source: str, keep: Match | None = None, drop: Match | None = None) -> Pruned:
    """The HTML inside every element keep matches (all of it when keep is None), less each element drop matches."""
    parser = _Pruner(keep, drop or (lambda tag, attrs: False))
    parser.feed(source)
    parser.close()
    return Pruned("".join(parser.out), parser.dropped)


class _Pruner(HTMLParser):
    def __init__(self, keep: Match | None, drop: Match):
        super().__init__(convert_charrefs=True)
        self.keep, self.drop, self.out, self.dropped = keep, drop, [], 0
        self.stack: list[str] = []  # the open elements' tags
        self.kept_at = 0 if keep is None else None  # depth of the kept element we are in (0: the whole page)
        self.dropped_at: int | None = None  # depth of the dropped element we are in

    @property
    def writing(self) -> bool:
        return self.kept_at is not None and self.dropped_at is None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        depth = len(self.stack) + 1
        if tag not in VOID:
            self.stack.append(tag)
        if self.writing and self.drop(tag, attrs):
            self.dropped += 1
            self.dropped_at = None if tag in VOID else depth
        elif self.writing:
            self.out.append(self.get_starttag_text() or "")
        elif self.kept_at is None and self.keep is not None and self.keep(tag, attrs) and tag not in VOID:
            self.kept_at = depth

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag not in self.stack:
            return  # a stray end tag: nothing it closes
        while self.stack:
            depth, open_tag = len(self.stack), self.stack.pop()
            if self.dropped_at == depth:
                self.dropped_at = None
            elif self.kept_at == depth and self.keep is not None:
                self.kept_at = None
            elif self.writing:
                self.out.append(f"</{open_tag}>")
            if open_tag == tag:
                return

    def handle_data(self, data):
        if self.writing:
            self.out.append(html.escape(data, quote=False))
