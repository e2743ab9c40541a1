"""Medium exports (bricklm.text.readers.medium): the zip's published posts, without Medium's page chrome (header,
subtitle section, byline, canonical link, "Exported from Medium"); drafts left out and counted; the account's other
folders never read."""

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.archive import Archive
from bricklm.text.readers import pick_zip
from bricklm.text.readers.medium import CHROME, READER
from exporthelp import make_zip, medium_export, medium_page

STORY = (
    '<p name="e5f6" class="graf graf--p graf-after--h3">The <strong class="markup--strong">tide</strong> came in.</p>'
    '<figure name="f7a8" class="graf graf--figure"><img class="graf-image" src="https://cdn-images-1.medium.com/x.jpeg">'
    '<figcaption class="imageCaption">Low water.</figcaption></figure>'
    '<div name="b9c0" class="graf graf--mixtapeEmbed"><a href="https://medium.com/@other/story" class="markup--anchor">'
    "<strong>Someone else's story</strong><em>Their words</em></a></div>"
    '<p name="d1e2" class="graf graf--p graf--trailing">It went out at noon.</p>'
)
POSTS = {
    "2024-01-15_Tides-5f1e2d3c4b5a.html": medium_page("Tides", STORY, subtitle="The tide came in."),
    "draft_Half-an-idea-0a1b2c3d4e5f.html": medium_page(
        "Half an idea", "<p class='graf'>Not yet.</p>", published=False
    ),
    "2024-01-20_Winter-6a7b8c9d0e1f.html": medium_page("Winter", "<h4 class='graf graf--h4'>Cold</h4><p>Snow.</p>"),
}


def read(tmp_path, **settings):
    archive = Archive(medium_export(tmp_path / "medium-export.zip", POSTS))
    try:
        return list(READER.read(archive, PrepareConfig(**settings)))
    finally:
        archive.close()


def test_published_posts_are_read_without_mediums_page_chrome(tmp_path):
    items = read(tmp_path)
    docs = [i for i in items if hasattr(i, "text")]
    assert [d.text for d in docs] == ["The tide came in.\n\nLow water.\n\nIt went out at noon.", "Cold\n\nSnow."]
    assert docs[0].markup[CHROME] == 2 and docs[0].markup["images dropped"] == 1
    assert [(i.path, i.reason) for i in items if not hasattr(i, "text")] == [
        ('"Half an idea"', "draft (--include-drafts reads it)")
    ]


def test_drafts_and_titles_when_asked_for(tmp_path):
    texts = [i.text for i in read(tmp_path, include_drafts=True, titles="keep")]
    assert texts == [
        "Tides\n\nThe tide came in.\n\nLow water.\n\nIt went out at noon.",
        "Winter\n\nCold\n\nSnow.",
        "Half an idea\n\nNot yet.",
    ]


def test_a_medium_zip_is_picked_by_its_members():
    assert pick_zip(["README.html", "posts/a.html", "profile/profile.html"]).kind == "medium"
    assert pick_zip(["medium-export/README.html", "medium-export/posts/a.html"]).kind == "medium"
    assert pick_zip(["README.html", "notes/a.html"]) is None


def test_prepare_reports_a_medium_export_and_never_reads_the_account_folders(tmp_path, capsys):
    medium_export(tmp_path / "medium-export.zip", POSTS)
    assert main(["prepare", str(tmp_path / "medium-export.zip"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/medium-export.zip (Medium export): 2 documents read, 1 left out\n" in out
    corpus = (tmp_path / "out" / "corpus.txt").read_text()
    for chrome in ("A Writer", "Canonical link", "Exported from", "January", "Someone else", "192.0.2.1", "Tides"):
        assert chrome not in corpus
    assert corpus.count("The tide came in.") == 1  # the subtitle section repeats it: read once


@pytest.mark.parametrize(
    "members, needle",
    [
        ({"README.html": "x", "posts/draft_a.html": "<p>x</p>"}, "no text found in"),
        ({"README.html": "x", "posts/a.html": "<p>x</p>", "/etc/passwd": "x"}, "leaves the archive"),
        ({"README.html": "x", "posts/a.html": b" " * (8 << 20)}, "100 times"),
    ],
    ids=["no-published-post", "member-escapes", "bomb"],
)
def test_a_broken_medium_export_is_one_error_line(tmp_path, capsys, members, needle):
    make_zip(tmp_path / "medium-export.zip", members)
    before = (tmp_path / "medium-export.zip").read_bytes()
    assert main(["prepare", str(tmp_path / "medium-export.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: ") and f"{tmp_path}/medium-export.zip" in err, err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "out").exists() and (tmp_path / "medium-export.zip").read_bytes() == before


def test_a_medium_post_whose_zipped_bytes_are_damaged_is_one_error_line(tmp_path, capsys):
    members = {"posts/a.html": "<p>Text.</p>" * 2000, "README.html": "<p>Medium export</p>"}
    data = bytearray(make_zip(tmp_path / "medium-export.zip", members).read_bytes())
    data[60:70] = b"\x00" * 10  # inside the first member's compressed bytes
    (tmp_path / "medium-export.zip").write_bytes(bytes(data))
    assert main(["prepare", str(tmp_path / "medium-export.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bricklm: error: {tmp_path}/medium-export.zip:posts/a.html: damaged zip member"), err
    assert not (tmp_path / "out").exists()


def test_a_medium_export_cut_short_is_one_error_line(tmp_path, capsys):
    whole = medium_export(tmp_path / "whole.zip", POSTS).read_bytes()
    (tmp_path / "medium-export.zip").write_bytes(whole[: len(whole) // 2])  # a download cut short
    assert main(["prepare", str(tmp_path / "medium-export.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bricklm: error: {tmp_path}/medium-export.zip: not a readable zip") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
