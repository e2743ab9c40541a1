"""Substack exports (bricklm.text.readers.substack): the zip's published posts from posts.csv, without Substack's
subscribe boxes, buttons and image chrome; drafts left out and counted; a broken export is one error line."""

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.archive import Archive
from bricklm.text.readers import pick_zip
from bricklm.text.readers.substack import CHROME, READER
from exporthelp import SUBSTACK_IMAGE, SUBSTACK_SHARE, SUBSTACK_SUBSCRIBE, make_zip, substack_export, substack_post

HARBOUR = f"<p>The <em>boats</em> came back.</p>{SUBSTACK_IMAGE}{SUBSTACK_SUBSCRIBE}{SUBSTACK_SHARE}<p>Then rain.</p>"
POSTS = [
    substack_post(139921185, "the-harbour", "The harbour", HARBOUR),
    substack_post(139921186, "half-an-idea", "Half an idea", "<p>Not yet.</p>", published=False),
    substack_post(139921187, "winter", "Winter", "<h2>Cold</h2><p>Snow, at last.</p>"),
]


def read(tmp_path, posts=POSTS, **settings):
    archive = Archive(substack_export(tmp_path / "export.zip", posts))
    try:
        return list(READER.read(archive, PrepareConfig(**settings)))
    finally:
        archive.close()


def test_published_posts_are_read_without_substacks_chrome(tmp_path):
    items = read(tmp_path)
    docs = [i for i in items if hasattr(i, "text")]
    assert [d.text for d in docs] == [
        "The boats came back.\n\nThe harbour at dawn.\n\nThen rain.",
        "Cold\n\nSnow, at last.",
    ]
    assert docs[0].name == f"{tmp_path}/export.zip:posts/139921185.the-harbour.html"
    assert docs[0].markup[CHROME] == 3 and docs[0].markup["images dropped"] == 1
    assert [(i.path, i.reason) for i in items if not hasattr(i, "text")] == [
        ('"Half an idea"', "draft (--include-drafts reads it)")
    ]


def test_drafts_and_titles_when_asked_for(tmp_path):
    texts = [i.text for i in read(tmp_path, include_drafts=True, titles="keep")]
    assert texts[1] == "Half an idea\n\nNot yet."


def test_a_substack_zip_is_picked_by_its_members_and_a_plain_zip_is_not():
    assert pick_zip(["email_list.x.csv", "posts.csv", "posts/1.a.html", "posts/1.a.opens.csv"]).kind == "substack"
    assert pick_zip(["export/posts.csv", "export/posts/1.a.html"]).kind == "substack"
    assert pick_zip(["posts/a.html", "notes.csv"]) is None


def test_prepare_reports_a_substack_export_and_never_reads_the_subscriber_lists(tmp_path, capsys):
    substack_export(tmp_path / "export.zip", POSTS)
    assert main(["prepare", str(tmp_path / "export.zip"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/export.zip (Substack export): 2 documents read, 1 left out\n" in out
    corpus = (tmp_path / "out" / "corpus.txt").read_text()
    assert "Subscribe" not in corpus and "Share" not in corpus and "reader@example.com" not in corpus
    assert "Restack" not in corpus and "Not yet" not in corpus


BAD_CSV = "post_id,title\n1.a,A\n"


@pytest.mark.parametrize(
    "members, needle",
    [
        (
            {"posts.csv": BAD_CSV, "posts/1.a.html": "<p>x</p>"},
            "export.zip:posts.csv: not a Substack export's posts.csv",
        ),
        ({"posts.csv": b"post_id,is_published\n\xff\xfe\x00", "posts/1.a.html": "<p>x</p>"}, "damaged posts.csv"),
        ({"posts.csv": "post_id,is_published\n1.a,false\n", "posts/1.a.html": "<p>x</p>"}, "no text found in"),
        ({"posts.csv": "post_id,is_published\n", "posts/1.a.html": "<p>x</p>", "../evil.html": "x"}, "leaves the"),
        ({"posts.csv": "post_id,is_published\n1.a,true\n", "posts/1.a.html": b" " * (8 << 20)}, "100 times"),
    ],
    ids=["not-substack-csv", "damaged-csv", "no-published-post", "member-escapes", "bomb"],
)
def test_a_broken_substack_export_is_one_error_line(tmp_path, capsys, members, needle):
    make_zip(tmp_path / "export.zip", members)
    before = (tmp_path / "export.zip").read_bytes()
    assert main(["prepare", str(tmp_path / "export.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: ") and f"{tmp_path}/export.zip" in err, err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "out").exists() and (tmp_path / "export.zip").read_bytes() == before


def test_a_substack_post_whose_zipped_bytes_are_damaged_is_one_error_line(tmp_path, capsys):
    members = {"posts/1.a.html": "<p>Text.</p>" * 2000, "posts.csv": "post_id,is_published\n1.a,true\n"}
    data = bytearray(make_zip(tmp_path / "export.zip", members).read_bytes())
    data[60:70] = b"\x00" * 10  # inside the first member's compressed bytes
    (tmp_path / "export.zip").write_bytes(bytes(data))
    assert main(["prepare", str(tmp_path / "export.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bricklm: error: {tmp_path}/export.zip:posts/1.a.html: damaged zip member"), err
    assert not (tmp_path / "out").exists()


def test_a_substack_export_cut_short_is_one_error_line(tmp_path, capsys):
    whole = substack_export(tmp_path / "whole.zip", POSTS).read_bytes()
    (tmp_path / "export.zip").write_bytes(whole[: len(whole) // 2])  # a download cut short
    assert main(["prepare", str(tmp_path / "export.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bricklm: error: {tmp_path}/export.zip: not a readable zip") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
