"""WordPress exports (bricklm.text.readers.wordpress): published posts and pages, everything else left out and
counted, block comments and shortcodes gone, reader comments only when asked for."""

import json

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.prepare import prepare
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.wordpress import READER
from exporthelp import comment, post, wxr

BLOCK_POST = """<!-- wp:paragraph -->
<p>The first paragraph, with <strong>bold</strong> and a <a href="https://example.com">link</a>.</p>
<!-- /wp:paragraph -->

<!-- wp:more -->
<!--more-->
<!-- /wp:more -->

<!-- wp:heading -->
<h2 class="wp-block-heading">A heading</h2>
<!-- /wp:heading -->

<!-- wp:image {"id":6,"sizeSlug":"large"} -->
<figure class="wp-block-image size-large"><img src="https://blog.example.com/cat.jpg" alt="A cat" class="wp-image-6"/>\
<figcaption class="wp-element-caption">The cat, asleep.</figcaption></figure>
<!-- /wp:image -->

<!-- wp:list -->
<ul><!-- wp:list-item -->
<li>One &amp; two</li>
<!-- /wp:list-item --></ul>
<!-- /wp:list -->"""

CLASSIC_POST = """A classic-editor post: paragraphs are blank lines, not tags.

[caption id="attachment_7" align="aligncenter" width="300"]<img class="size-medium wp-image-7" src="dog.jpg" \
alt="" width="300" height="200" /> The dog, awake.[/caption]

[gallery ids="7,8,9"]

[embed]https://www.youtube.com/watch?v=abc[/embed]

[audio mp3="https://blog.example.com/a.mp3"][/audio]

Prose in brackets [sic] stays; [some_plugin id="3"]so does what a plugin's shortcode encloses[/some_plugin].
Text with ]]> inside CDATA."""

EVERY_KIND = [
    post("Block post", BLOCK_POST, post_id=1, comments=[comment("Great post!"), comment("Spam", "spam", n=2)]),
    post("About", "<p>About me.</p>", post_type="page", post_id=2),
    post("Classic post", CLASSIC_POST, post_id=3, comments=[comment("Linked to this", kind="pingback", n=3)]),
    post("A draft", "<p>Draft words.</p>", status="draft", post_id=4),
    post("Scheduled", "<p>Future words.</p>", status="future", post_id=5),
    post("Pending", "<p>Pending words.</p>", status="pending", post_id=6),
    post("Private", "<p>Private words.</p>", status="private", post_id=7),
    post("Binned", "<p>Trashed words.</p>", status="trash", post_id=8),
    post(
        "Block post", "<p>An old revision.</p>", status="inherit", post_type="revision", slug="1-revision-v1", post_id=9
    ),
    post("cat", "", status="inherit", post_type="attachment", post_id=10),
    post("Home", "", post_type="nav_menu_item", post_id=11),
    post("Reusable", "<p>A reusable block.</p>", post_type="wp_block", post_id=12),
]

BLOCK_PROSE = """The first paragraph, with bold and a link.

A heading

The cat, asleep.

One & two"""

CLASSIC_PROSE = """A classic-editor post: paragraphs are blank lines, not tags.

The dog, awake.

Prose in brackets [sic] stays; so does what a plugin's shortcode encloses.
Text with ]]> inside CDATA."""


def read(tmp_path, posts, **settings):
    path = tmp_path / "export.xml"
    path.write_text(wxr(posts))
    return list(READER.read(FileEntry(path), PrepareConfig(**settings)))


def test_published_posts_and_pages_become_prose(tmp_path):
    items = read(tmp_path, EVERY_KIND)
    docs = [i for i in items if hasattr(i, "text")]
    assert [d.name for d in docs] == [
        f"{tmp_path}/export.xml#{slug}" for slug in ("block-post", "about", "classic-post")
    ]
    assert [d.text for d in docs] == [BLOCK_PROSE, "About me.", CLASSIC_PROSE]
    assert all(d.within == str(tmp_path / "export.xml") for d in items)
    assert docs[0].markup["block-editor comments removed"] == 12 and docs[0].markup["HTML comments removed"] == 1
    assert docs[2].markup["shortcodes removed"] == 7


def test_everything_else_is_left_out_with_its_reason(tmp_path):
    left = {(i.path, i.reason) for i in read(tmp_path, EVERY_KIND) if not hasattr(i, "text")}
    assert left == {
        ('"A draft"', "draft (--include-drafts reads it)"),
        ('"Scheduled"', "scheduled (--include-drafts reads it)"),
        ('"Pending"', "pending review (--include-drafts reads it)"),
        ('"Private"', "private (--include-drafts reads it)"),
        ('"Binned"', "trash"),
        ('"Block post"', "revision"),
        ('"cat"', "attachment"),
        ('"Home"', "menu item"),
        ('"Reusable"', "post type wp_block"),
        ('comment 1 on "Block post"', "reader comment (--comments reads it)"),
        ('comment 2 on "Block post"', "spam comment"),
        ('comment 1 on "Classic post"', "pingback"),
    }


def test_include_drafts_reads_drafts_scheduled_pending_and_private_but_not_trash(tmp_path):
    texts = [i.text for i in read(tmp_path, EVERY_KIND, include_drafts=True) if hasattr(i, "text")]
    assert texts[3:] == ["Draft words.", "Future words.", "Pending words.", "Private words."]
    assert "Trashed words." not in texts


def test_comments_adds_approved_reader_comments_after_their_post(tmp_path):
    docs = [i for i in read(tmp_path, EVERY_KIND, comments=True) if hasattr(i, "text")]
    assert docs[0].text == BLOCK_PROSE + "\n\nGreat post!"
    assert docs[2].text == CLASSIC_PROSE  # a pingback is another site's words
    assert docs[0].markup["reader comments kept after their post"] == 1


def test_titles_keep_puts_the_title_first(tmp_path):
    docs = [i for i in read(tmp_path, [post("Tom &amp; Jerry’s  day", "<p>Body.</p>")], titles="keep")]
    assert docs[0].text == "Tom & Jerry’s day\n\nBody."


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_every_wxr_version_is_read(tmp_path, version):
    (tmp_path / "export.xml").write_text(wxr([post("Hi", "<p>Hello.</p>")], version=version))
    docs = list(READER.read(FileEntry(tmp_path / "export.xml"), PrepareConfig()))
    assert [d.text for d in docs] == ["Hello."]


def test_prepare_reports_the_export_and_what_it_left_out(tmp_path, capsys):
    (tmp_path / "export.xml").write_text(wxr(EVERY_KIND))
    assert main(["prepare", str(tmp_path / "export.xml"), "--out", str(tmp_path / "corpus")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "corpus" / "corpus.txt").read_text() == "\n\n".join([BLOCK_PROSE, "About me.", CLASSIC_PROSE])
    assert "files read:" not in out  # an export's posts are documents, not files
    for line in [
        f"{tmp_path}/export.xml (WordPress export): 3 documents read, 12 left out",
        '  1 draft (--include-drafts reads it): "A draft"',
        '  1 revision: "Block post"',
        '  1 reader comment (--comments reads it): comment 1 on "Block post"',
        "documents: 3",
    ]:
        assert line + "\n" in out, line
    meta = json.loads((tmp_path / "corpus" / "meta.json").read_text())
    [export] = meta["exports"]
    assert export["kind"] == "WordPress export" and export["documents"] == 3
    assert export["left_out"]["trash"] == {"count": 1, "first": ['"Binned"']}
    assert meta["comments"] is False and meta["include_drafts"] is False and meta["titles"] == "drop"


def test_an_export_of_nothing_published_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "export.xml").write_text(wxr([post("Idea", "<p>x</p>", status="draft")] * 2))
    assert main(["prepare", str(tmp_path / "export.xml"), "--out", str(tmp_path / "corpus")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: no text found in") and err.count("\n") == 1
    assert "left out of exports: 2 draft (--include-drafts reads it)" in err
    assert not (tmp_path / "corpus").exists()


def test_a_wordpress_export_is_found_by_its_content(tmp_path):
    """In a folder, an .xml that is a WordPress export is read and another .xml is ignored; named alone, an
    export is read whatever its name."""
    (tmp_path / "blog").mkdir()
    (tmp_path / "blog" / "site.wordpress.2024-01-15.xml").write_text(wxr([post("Hi", "<p>From WordPress.</p>")]))
    (tmp_path / "blog" / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url/></urlset>'
    )
    report = prepare([tmp_path / "blog"], tmp_path / "out", log=lambda *a: None)
    assert (tmp_path / "out" / "corpus.txt").read_text() == "From WordPress."
    assert report.ignored_extensions == {".xml": 1}
    (tmp_path / "export").write_text(wxr([post("Hi", "<p>No extension.</p>")]))
    prepare([tmp_path / "export"], tmp_path / "out2", log=lambda *a: None)
    assert (tmp_path / "out2" / "corpus.txt").read_text() == "No extension."


@pytest.mark.slow
def test_a_large_export_is_streamed_one_post_at_a_time(tmp_path):
    """A 20 MB export: peak memory grows by far less than the export (each <item> is cleared once read)."""
    import subprocess
    import sys

    body = (
        "<!-- wp:paragraph -->\n<p>"
        + "A sentence of a long post, repeated for size. " * 40
        + "</p>\n<!-- /wp:paragraph -->"
    )
    posts = [post(f"Post {i}", body, post_id=i, slug=f"post-{i}") for i in range(9000)]
    (tmp_path / "export.xml").write_text(wxr(posts))
    size = (tmp_path / "export.xml").stat().st_size
    assert size > 18 * 2**20
    measure = (
        "import json, resource, sys\n"
        "from bricklm.text.prepare import prepare\n"
        "import bricklm.text.tokenizer\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "report = prepare([sys.argv[1]], sys.argv[2], log=lambda *a: None)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print(json.dumps({'growth': after - before, 'documents': report.documents}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, str(tmp_path / "export.xml"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["documents"] == 9000
    assert result["growth"] < size / 4, (
        f"peak memory grew {result['growth'] / 2**20:.1f} MB on a {size / 2**20:.0f} MB export"
    )
