"""An XML export read as a stream, with the one set of errors every XML reader gives.

    def read(entry, cfg):
        yield from read_xml(entry, cfg, _items, kind="a feed", cut="the file may be cut short: get it again")

`items(entry, source, cfg)` walks the open file with defusedxml's iterparse; a file that is not
well-formed, or declares a DTD, entities or an external reference (where an entity-expansion bomb or
a file of this machine would hide), or fails part way is one UserError naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped
from bricklm.text.readers.base import Entry


def read_xml(
    entry: Entry, cfg: PrepareConfig, items: Callable[..., Iterator[Document | Skipped]], kind: str, cut: str
) -> Iterator[Document | Skipped]:
    """items' documents from entry's open file; kind names what has no DTD ("a feed"), cut says what to do
    about a file that ends too soon."""
    try:
        source = entry.open()
    except OSError as e:
        yield Skipped(entry.name, f"unreadable ({e.strerror or type(e).__name__})")
        return
    with source:
        try:
            yield from items(entry, source, cfg)
        except ParseError as e:
            raise UserError(f"{entry.name}: not well-formed XML ({e}); {cut}") from None
        except DefusedXmlException:
            raise UserError(
                f"{entry.name}: refused: it declares a DTD, XML entities or an external reference (where an "
                f"entity-expansion bomb or a file of this machine would hide); {kind} has none"
            ) from None
        except OSError as e:
            raise UserError(f"{entry.name}: unreadable part way ({e.strerror or type(e).__name__})") from None
