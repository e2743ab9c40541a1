"""Zips read in place (bricklm.text.archive, and corpus.scan_sources for zips): members are files like a folder's,
a zip met in a folder is opened when it holds writing, and every member is read through the bomb guard."""

import zipfile

import pytest

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.archive import Archive, Limits, escapes
from bricklm.text.corpus import scan_sources
from bricklm.text.prepare import prepare
from exporthelp import make_zip, post, wxr


def quiet(*_):
    pass


def test_a_zip_is_read_like_a_folder_of_its_members(tmp_path):
    archive = make_zip(
        tmp_path / "site.zip",
        {
            "site/posts/b.md": "---\ntitle: B\n---\nSecond post.",
            "site/posts/a.md": "First *post*.",
            "site/about.html": "<p>About.</p>",
            "site/images/logo.png": b"\x89PNG",
            "site/export.xml": wxr([post("In the zip", "<p>From WordPress.</p>")]),
            "site/nested.zip": b"PK\x05\x06" + b"\x00" * 18,
        },
    )
    report = prepare([archive], tmp_path / "out", log=quiet)
    corpus = (tmp_path / "out" / "corpus.txt").read_text()
    assert corpus == "About.\n\nFrom WordPress.\n\nFirst post.\n\nSecond post."  # sorted by path inside the zip
    assert [f["path"] for f in report.files_read] == [
        f"{archive}:site/{n}" for n in ("about.html", "posts/a.md", "posts/b.md")
    ]
    assert report.exports[0]["path"] == f"{archive}:site/export.xml" and report.exports[0]["documents"] == 1
    assert report.archives == [{"path": str(archive), "files": 4, "ignored": 2}]
    assert report.ignored_extensions == {".png": 1, ".zip": 1}  # a zip inside a zip is not opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "site.zip"]  # nothing unpacked


def test_a_zip_met_in_a_folder_is_opened_only_when_it_holds_writing(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "note.md").write_text("A note.")
    make_zip(tmp_path / "notes" / "vault.zip", {"Vault/Idea.md": "An idea in [[Vault]]."})
    make_zip(tmp_path / "notes" / "photos.zip", {"a.jpg": b"\xff\xd8", "b.jpg": b"\xff\xd8", "c.heic": b"x"})
    (tmp_path / "notes" / "broken.zip").write_bytes(b"PK\x03\x04 cut short")
    report = prepare([tmp_path / "notes"], tmp_path / "out", log=quiet)
    assert (tmp_path / "out" / "corpus.txt").read_text() == "A note.\n\nAn idea in Vault."
    assert {(s["path"], s["reason"]) for s in report.files_skipped} == {
        (str(tmp_path / "notes" / "photos.zip"), "a zip of nothing bricklm reads (.heic 1, .jpg 2)"),
        (str(tmp_path / "notes" / "broken.zip"), "not a readable zip (File is not a zip file)"),
    }
    text = report.format()
    assert f"{tmp_path}/notes/vault.zip (zip archive): 1 files read from it, 0 ignored" in text
    assert "files skipped: 2" in text


def test_members_are_sorted_and_checked_and_hidden_ones_marked(tmp_path):
    archive = Archive(make_zip(tmp_path / "x.zip", {"b/z.md": "1", "a.md": "2", ".git/c.md": "3", "b/": ""}))
    members = archive.members()
    assert [m.info.filename for m in members] == [".git/c.md", "a.md", "b/z.md"]  # folders are not members
    assert [m.hidden for m in members] == [True, False, False]
    assert members[1].name == f"{tmp_path}/x.zip:a.md" and members[1].read_bytes() == b"2"
    archive.close()


@pytest.mark.parametrize(
    "name, escaping",
    [("a/b.md", False), ("a/..b.md", False), ("../b.md", True), ("a/../../b", True), ("/abs", True), ("\\abs", True)]
    + [("C:\\x.md", True), ("a\\..\\..\\b", True)],
)
def test_member_paths_that_leave_the_archive(name, escaping):
    assert escapes(name) == escaping


def test_the_guard_counts_inflated_bytes_against_both_limits(tmp_path):
    spaces = make_zip(tmp_path / "spaces.zip", {"a.md": b" " * (3 << 20)})  # ~1000:1
    small = make_zip(tmp_path / "small.zip", {"a.md": b" " * (512 << 10)})  # as repetitive, but under RATIO_FLOOR
    stored = make_zip(tmp_path / "stored.zip", {"a.md": b"x" * (3 << 20)}, method=zipfile.ZIP_STORED)
    with pytest.raises(UserError, match=r"spaces.zip:a.md: refusing the zip: it inflates past 100 times"):
        Archive(spaces).members()[0].read_bytes()
    assert len(Archive(spaces, Limits(max_ratio=10_000)).members()[0].read_bytes()) == 3 << 20
    assert len(Archive(small).members()[0].read_bytes()) == 512 << 10
    with pytest.raises(UserError, match=r"stored.zip:a.md: refusing the zip: it inflates past 2 MB"):
        Archive(stored, Limits(max_bytes=2 << 20)).members()[0].read_bytes()


def test_archive_limits_are_prepare_settings(tmp_path):
    spaces = make_zip(tmp_path / "spaces.zip", {"a.md": b"word " * (1 << 20)})
    with pytest.raises(UserError, match="--archive-max-ratio"):
        prepare([spaces], tmp_path / "out", log=quiet)
    prepare([spaces], tmp_path / "out", PrepareConfig(archive_max_ratio=100_000), log=quiet)
    with pytest.raises(UserError, match="prepare.archive_max_member_mb must be at least 1"):
        prepare([spaces], tmp_path / "out2", PrepareConfig(archive_max_member_mb=0), log=quiet)


def test_a_scan_lists_a_zips_members_after_what_sorts_before_it(tmp_path):
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "c.md").write_text("c")
    make_zip(tmp_path / "b.zip", {"y.md": "y", "x.md": "x"})
    names = [f.name for f in scan_sources([tmp_path]).files]  # a Path's own name; a member's is zip:path
    assert names == ["a.md", f"{tmp_path}/b.zip:x.md", f"{tmp_path}/b.zip:y.md", "c.md"]
