"""Blogger exports and Atom or RSS feeds (bricklm.text.readers.feeds): posts and pages read through the HTML path;
comments, the template and settings entries and drafts left out and counted."""

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers import pick
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.feeds import BLOGGER_READER, READER
from exporthelp import atom_feed, blogger_entry, blogger_export, make_zip, rss_feed

TEMPLATE = "<?xml version='1.0'?><html><b:skin><![CDATA[body { color: red }]]></b:skin><p>Template words</p></html>"
ENTRIES = [
    blogger_entry("template", "Template: A Test Blog", TEMPLATE, n=1),
    blogger_entry("settings", "BLOG_NAME", "A Test Blog", n=2),
    blogger_entry("settings", "BLOG_DESCRIPTION", "Notes from the coast", n=3),
    blogger_entry("post", "Tides", "The <b>tide</b> came in at six.<br /><br />It went out at noon.", n=4),
    blogger_entry("post", "Half an idea", "<p>Not yet.</p>", draft=True, n=5),
    blogger_entry("page", "About", '<div class="separator"><img src="me.jpg" /></div><p>I write here.</p>', n=6),
    blogger_entry("comment", "Nice post!", "Nice post! Visit my site", n=7),
]


def read(tmp_path, text, reader=BLOGGER_READER, **settings):
    (tmp_path / "blog-01-15-2024.xml").write_text(text)
    return list(reader.read(FileEntry(tmp_path / "blog-01-15-2024.xml"), PrepareConfig(**settings)))


def test_blogger_posts_and_pages_are_read_and_the_rest_counted(tmp_path):
    items = read(tmp_path, blogger_export(ENTRIES))
    assert [i.text for i in items if hasattr(i, "text")] == [
        "The tide came in at six.\n\nIt went out at noon.",
        "I write here.",
    ]
    left = sorted((i.path, i.reason) for i in items if not hasattr(i, "text"))
    assert left == [
        ('"BLOG_DESCRIPTION"', "blog setting"),
        ('"BLOG_NAME"', "blog setting"),
        ('"Half an idea"', "draft (--include-drafts reads it)"),
        ('"Nice post!"', "reader comment (--comments reads it)"),
        ('"Template: A Test Blog"', "blog template"),
    ]


def test_drafts_comments_and_titles_when_asked_for(tmp_path):
    items = read(tmp_path, blogger_export(ENTRIES), include_drafts=True, comments=True, titles="keep")
    assert [i.text for i in items if hasattr(i, "text")][1:] == [
        "Half an idea\n\nNot yet.",
        "About\n\nI write here.",
        "Nice post! Visit my site",
    ]


def test_blogger_newer_exports_mark_kind_and_status_in_their_own_fields(tmp_path):
    entry = (
        "<entry><id>tag:blogger.com,1999:blog-7000.post-{n}</id><blogger:type>{kind}</blogger:type>"
        "<blogger:status>{status}</blogger:status><title>T{n}</title><content type='html'>&lt;p&gt;Body {n}.&lt;/p&gt;"
        "</content></entry>"
    )
    rows = [("POST", "LIVE"), ("POST", "DRAFT"), ("PAGE", "LIVE"), ("COMMENT", "LIVE"), ("POST", "DELETED")]
    rows += [("COMMENT", "DELETED")]
    text = (
        "<?xml version='1.0' encoding='UTF-8'?><feed xmlns='http://www.w3.org/2005/Atom' "
        "xmlns:blogger='http://schemas.google.com/blogger/2018'><id>tag:blogger.com,1999:blog-7000</id>"
        + "".join(entry.format(n=n, kind=k, status=s) for n, (k, s) in enumerate(rows, 1))
        + "</feed>"
    )
    assert pick("feed.atom", text.encode()) is BLOGGER_READER
    items = read(tmp_path, text)
    assert [i.text for i in items if hasattr(i, "text")] == ["Body 1.", "Body 3."]
    assert [i.text for i in read(tmp_path, text, comments=True) if hasattr(i, "text")] == [
        "Body 1.",
        "Body 3.",
        "Body 4.",
    ]
    assert {i.reason for i in items if not hasattr(i, "text")} == {
        "draft (--include-drafts reads it)",
        "reader comment (--comments reads it)",
        "status deleted",
    }
    assert sum(getattr(i, "reason", "") == "status deleted" for i in items) == 2


def test_any_atom_feed_reads_html_xhtml_and_text_content(tmp_path):
    text = atom_feed(
        [
            ("One", "html", "<p>First <em>post</em>.</p>"),
            ("Two", "xhtml", "<p>Second &amp; <b>last</b>.</p>"),
            ("Three", "text", "Plain <not a tag> & text."),
        ]
    )
    assert pick("atom.xml", text.encode()) is READER
    assert [d.text for d in read(tmp_path, text, READER)] == [
        "First post.",
        "Second & last.",
        "Plain <not a tag> & text.",
    ]


@pytest.mark.parametrize("encoded", [False, True])
def test_an_rss_feed_reads_each_items_html(tmp_path, encoded):
    text = rss_feed([("One", "<p>An <a href='x'>RSS</a> item.</p>"), ("Two", "<p>Another.</p>")], encoded)
    assert pick("feed.rss", text.encode()) is READER
    assert [d.text for d in read(tmp_path, text, READER)] == ["An RSS item.", "Another."]


def test_prepare_reports_a_blogger_export(tmp_path, capsys):
    (tmp_path / "blog-01-15-2024.xml").write_text(blogger_export(ENTRIES))
    assert main(["prepare", str(tmp_path / "blog-01-15-2024.xml"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "blog-01-15-2024.xml (Blogger export): 2 documents read, 5 left out\n" in out
    assert '  2 blog setting: "BLOG_NAME", "BLOG_DESCRIPTION"\n' in out
    corpus = (tmp_path / "out" / "corpus.txt").read_text()
    assert "Template words" not in corpus and "Nice post" not in corpus and "A Test Blog" not in corpus


@pytest.mark.parametrize(
    "text, needle",
    [
        (blogger_export(ENTRIES)[:-400], "not well-formed XML"),
        (
            '<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaa">]><feed xmlns="http://www.w3.org/2005/Atom">'
            "<generator uri='http://www.blogger.com'>Blogger</generator><entry><title>&a;</title></entry></feed>",
            "refused: it declares a DTD",
        ),
    ],
)
def test_a_damaged_or_hostile_feed_is_refused(tmp_path, capsys, text, needle):
    (tmp_path / "blog.xml").write_text(text)
    assert main(["prepare", str(tmp_path / "blog.xml"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bricklm: error: {tmp_path}/blog.xml: {needle}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_feed_with_no_published_post_is_an_error_naming_it(tmp_path, capsys):
    make_zip(
        tmp_path / "takeout.zip", {"Blogger/Blogs/A Test Blog/feed.atom": blogger_export(ENTRIES[:3] + ENTRIES[4:5])}
    )
    before = (tmp_path / "takeout.zip").read_bytes()
    assert main(["prepare", str(tmp_path / "takeout.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: ") and err.count("\n") == 1 and "draft" in err
    assert not (tmp_path / "out").exists() and (tmp_path / "takeout.zip").read_bytes() == before
