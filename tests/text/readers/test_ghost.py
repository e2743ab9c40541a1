"""Ghost exports (bricklm.text.readers.ghost): published posts and pages from html, Lexical, Mobiledoc or
Markdown bodies; drafts and scheduled posts left out and counted."""

import json

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.ghost import READER
from exporthelp import ghost_export, ghost_post, lexical, lexical_block, lexical_text, mobiledoc

LEXICAL = lexical(
    lexical_block("paragraph", lexical_text("Written in "), lexical_text("Ghost 5"), lexical_text(".")),
    lexical_block("heading", lexical_text("A heading"), tag="h2"),
    lexical_block("list", lexical_block("listitem", lexical_text("one & two")), listType="bullet", tag="ul"),
    {"type": "image", "version": 1, "src": "https://example.com/cat.jpg", "caption": "A cat"},
    {"type": "codeblock", "version": 1, "code": "print('hi')", "language": "python"},
    {"type": "html", "version": 1, "html": "<p>Raw <b>HTML</b> card.</p>"},
    {"type": "markdown", "version": 1, "markdown": "A *markdown* card with [a link](https://x)."},
    {"type": "callout", "version": 1, "calloutText": "<p>A callout.</p>", "calloutEmoji": "💡"},
)
MOBILEDOC = mobiledoc(
    sections=[
        [1, "p", [[0, [], 0, "Written in Ghost 4, with "], [1, [], 0, 0]]],
        [10, 0],
        [10, 1],
        [3, "ul", [[[0, [], 0, "item"]]]],
    ],
    cards=[["markdown", {"markdown": "Markdown **card**."}], ["image", {"src": "/cat.jpg"}]],
    atoms=[["soft-return", "an atom", {}]],
)
POSTS = [
    ghost_post("From html", "<p>The <em>html</em> Ghost renders.</p>", n=1, lexical=LEXICAL),
    ghost_post("From lexical", None, n=2, lexical=LEXICAL),
    ghost_post("From mobiledoc", None, n=3, mobiledoc=MOBILEDOC),
    ghost_post("About", "<p>An about page.</p>", kind="page", n=4),
    ghost_post("Newsletter", "<p>Sent by email.</p>", status="sent", n=5),
    ghost_post("Idea", "<p>A draft.</p>", status="draft", n=6),
    ghost_post("Soon", "<p>Scheduled.</p>", status="scheduled", n=7),
]
LEXICAL_PROSE = (
    "Written in Ghost 5.\n\nA heading\n\none & two\n\nRaw HTML card.\n\nA markdown card with a link.\n\nA callout."
)


def read(tmp_path, posts=POSTS, wrapped=True, **settings):
    (tmp_path / "site.ghost.json").write_text(ghost_export(posts, wrapped))
    return list(READER.read(FileEntry(tmp_path / "site.ghost.json"), PrepareConfig(**settings)))


def test_published_posts_and_pages_are_read_from_each_body_form(tmp_path):
    docs = [i for i in read(tmp_path) if hasattr(i, "text")]
    assert [d.text for d in docs] == [
        "The html Ghost renders.",
        LEXICAL_PROSE,
        "Written in Ghost 4, with an atom\n\nMarkdown card.\n\nitem",
        "An about page.",
        "Sent by email.",
    ]
    assert docs[1].markup["Ghost cards dropped (images, embeds, bookmarks, ...)"] == 1
    assert docs[1].markup["code blocks dropped"] == 1


def test_drafts_and_scheduled_posts_are_left_out_unless_asked_for(tmp_path):
    left = {(i.path, i.reason) for i in read(tmp_path) if not hasattr(i, "text")}
    assert left == {
        ('"Idea"', "draft (--include-drafts reads it)"),
        ('"Soon"', "scheduled (--include-drafts reads it)"),
    }
    texts = [i.text for i in read(tmp_path, include_drafts=True)]
    assert texts[-2:] == ["A draft.", "Scheduled."]


def test_older_exports_are_read_too(tmp_path):
    """Ghost 0.x: markdown bodies, page 0 or 1, no "db" wrapper in some exports."""
    old = [
        {
            "id": 1,
            "title": "Old post",
            "slug": "old-post",
            "markdown": "Some *markdown*.",
            "page": 0,
            "status": "published",
        },
        {"id": 2, "title": "Old page", "slug": "old-page", "markdown": "A page.", "page": 1, "status": "published"},
    ]
    assert [d.text for d in read(tmp_path, old, wrapped=False)] == ["Some markdown.", "A page."]


def test_code_keep_and_titles_keep(tmp_path):
    [doc] = read(tmp_path, [ghost_post("From lexical", None, lexical=LEXICAL)], code="keep", titles="keep")
    assert doc.text.startswith("From lexical\n\nWritten in Ghost 5.") and "print('hi')" in doc.text


def test_prepare_reports_a_ghost_export_found_in_a_folder(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "my-site.ghost.2024-01-15-10-00-00.json").write_text(ghost_export(POSTS))
    (tmp_path / "src" / "package.json").write_text(json.dumps({"name": "not an export"}))
    assert main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "my-site.ghost.2024-01-15-10-00-00.json (Ghost export): 5 documents read, 2 left out\n" in out
    assert '  1 draft (--include-drafts reads it): "Idea"\n' in out
    assert "files ignored: 1 (extension: .json 1)" in out


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"db": [{"meta": {"exported_on": 1}, "data": {"posts": [', "damaged Ghost export, not valid JSON"),
        ('{"db": [{"meta": {"exported_on": 1}, "data": {}}]}', "not a Ghost export (no data.posts list)"),
    ],
)
def test_a_damaged_ghost_export_is_refused(tmp_path, capsys, text, needle):
    (tmp_path / "site.json").write_text(text)
    assert main(["prepare", str(tmp_path / "site.json"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bricklm: error: {tmp_path}/site.json: {needle}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
