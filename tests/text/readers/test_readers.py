"""The reader mechanism (bricklm.text.readers): a reader per kind, picked by a file's name and first bytes, and a
new kind of source added as one module."""

import pytest

from bricklm.cli import main
from bricklm.text import corpus, readers
from bricklm.text.documents import Document
from bricklm.text.readers import READERS, pick
from bricklm.text.readers.base import Reader, left_out
from exporthelp import (
    atom_feed,
    blogger_entry,
    blogger_export,
    ghost_export,
    ghost_post,
    make_zip,
    notebook,
    post,
    rss_feed,
    wxr,
)


def test_every_reader_is_one_kind_with_the_protocol():
    assert len({r.kind for r in READERS}) == len(READERS)
    for reader in READERS:
        assert isinstance(reader, Reader) and reader.label and reader.suffixes
        assert all(s.startswith(".") and s == s.lower() for s in reader.suffixes)


@pytest.mark.parametrize(
    "filename, head, kind",
    [
        ("post.md", b"# Hi", "files"),
        ("Post.MARKDOWN", b"", "files"),
        ("page.htm", b"<p>", "files"),
        ("export.xml", wxr([post()]).encode()[:8192], "wordpress"),
        ("export", wxr([post()]).encode()[:8192], "wordpress"),  # no extension: its content says
        ("export.wxr", b"\xef\xbb\xbf" + wxr([post()]).encode()[:8000], "wordpress"),
        ("feed.xml", b'<?xml version="1.0"?><rss version="2.0"><channel>', "feed"),
        ("blog-01-15-2024.xml", blogger_export([blogger_entry()]).encode()[:8192], "blogger"),
        ("atom.xml", atom_feed([("One", "html", "<p>x</p>")]).encode(), "feed"),
        ("index.rss", rss_feed([("One", "<p>x</p>")]).encode(), "feed"),
        ("Notes 0123456789abcdef0123456789abcdef.md", b"# Notes", "notion"),
        ("sitemap.xml", b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">', None),
        ("notes.md.xml", b"# WordPress export http://wordpress.org/export/ <rss", None),  # not XML at the start
        ("site.ghost.2024-01-15.json", ghost_export([ghost_post()]).encode()[:8192], "ghost"),
        ("package.json", b'{"name": "x", "version": "1.0"}', None),
        ("runs.ipynb", notebook([("markdown", "x")]).encode(), "jupyter"),
        ("runs.ipynb", b"not json", None),
        ("photo.jpg", b"\xff\xd8\xff", None),
    ],
)
def test_a_reader_is_picked_by_name_and_first_bytes(filename, head, kind):
    reader = pick(filename, head)
    assert (reader.kind if reader else None) == kind


def diary_reader() -> Reader:
    """A kind of source this project doesn't have: a file that starts "DIARY", one document per line."""

    def detect(filename: str, head: bytes) -> bool:
        return head.startswith(b"DIARY\n")

    def read(entry, cfg):
        for n, line in enumerate(entry.read_bytes().decode().splitlines()[1:], 1):
            yield (
                Document(f"{entry.name}#{n}", line, within=entry.name) if line else left_out(entry, f"day {n}", "empty")
            )

    return Reader("diary", "diary export", (".diary",), detect, read, export=True)


def test_a_new_kind_of_source_is_one_reader(tmp_path, monkeypatch, capsys):
    """What the next importers do: detect and read, listed in READERS. prepare then finds it in a folder and in a zip,
    and reports what it read and left out, with no other change."""
    diary = diary_reader()
    monkeypatch.setattr(readers, "READERS", (diary, *READERS))
    monkeypatch.setattr(corpus, "SNIFFED", corpus.SNIFFED | set(diary.suffixes))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "2024.diary").write_text("DIARY\nRained.\n\nSunny.\n")
    make_zip(tmp_path / "src" / "old.zip", {"2023.diary": "DIARY\nSnowed.\n"})
    assert main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "corpus.txt").read_text() == "Rained.\n\nSunny.\n\nSnowed."
    out = capsys.readouterr().out
    assert f"{tmp_path}/src/2024.diary (diary export): 2 documents read, 1 left out\n  1 empty: day 2\n" in out
    assert f"{tmp_path}/src/old.zip:2023.diary (diary export): 1 documents read, 0 left out" in out


def test_an_export_named_as_a_source_is_read_whatever_its_name(tmp_path):
    (tmp_path / "my-blog-backup").write_text(wxr([post("Hi", "<p>Named oddly.</p>")]))
    assert main(["prepare", str(tmp_path / "my-blog-backup"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "corpus.txt").read_text() == "Named oddly."
