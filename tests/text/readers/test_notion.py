"""Notion's Markdown export (bricklm.text.readers.notion): pages read without the ids Notion writes into names and
link text, titles from the page's heading, databases' CSVs skipped and counted, as a zip or a folder."""

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers import MARKUP, pick_named
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.notion import DATABASE, IDS, READER, title_of
from exporthelp import NOTION_IDS, make_zip, notion_export

TOP = f"Travel Notes {NOTION_IDS[1]}"


def test_a_notion_page_is_picked_by_its_name():
    assert pick_named(f"{TOP}.md") is READER and title_of(f"{TOP}.md") == "Travel Notes"
    assert pick_named("2024-01-01-tides.md") is MARKUP and pick_named(f"{TOP}.html") is MARKUP
    assert title_of(f"Trips {NOTION_IDS[3]}_all.csv") == "Trips" and title_of("Trips.csv") is None


def test_a_page_loses_its_title_heading_and_the_ids_in_link_text(tmp_path):
    (tmp_path / f"{TOP}.md").write_text(notion_export()[f"{TOP}.md"])
    [doc] = READER.read(FileEntry(tmp_path / f"{TOP}.md"), PrepareConfig())
    assert doc.text == "We left at dawn with the Packing List.\n\nTrips"
    assert doc.markup[IDS] == 1
    [kept] = READER.read(FileEntry(tmp_path / f"{TOP}.md"), PrepareConfig(titles="keep"))
    assert kept.text.startswith("Travel Notes\n\nWe left at dawn")


def test_a_page_without_a_heading_is_titled_by_its_file_name(tmp_path):
    (tmp_path / f"Ideas {NOTION_IDS[5]}.md").write_text("Just a line.\n")
    [doc] = READER.read(FileEntry(tmp_path / f"Ideas {NOTION_IDS[5]}.md"), PrepareConfig(titles="keep"))
    assert doc.text == "Ideas\n\nJust a line."


@pytest.mark.parametrize("as_zip", [True, False])
def test_prepare_reads_a_notion_export_zipped_or_unzipped(tmp_path, capsys, as_zip):
    if as_zip:
        source = make_zip(tmp_path / "Export-2f6a.zip", notion_export())
    else:
        source = tmp_path / "Export-2f6a"
        for name, data in notion_export().items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    assert main(["prepare", str(source), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "files read: 3\n" in out and "files skipped: 2\n" in out and f": {DATABASE}" in out
    assert "files ignored: 1 (extension: .png 1)" in out
    corpus = (tmp_path / "out" / "corpus.txt").read_text()
    assert all(i not in corpus for i in NOTION_IDS.values()) and "Lisbon,Done" not in corpus
    assert "The trams were full." in corpus and "Boots" in corpus and "Travel Notes" not in corpus


def test_a_notion_export_with_no_page_is_one_error_line(tmp_path, capsys):
    make_zip(tmp_path / "Export-2f6a.zip", {f"Trips {NOTION_IDS[3]}.csv": "Name\nLisbon\n"})
    assert main(["prepare", str(tmp_path / "Export-2f6a.zip"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: ") and err.count("\n") == 1 and "Export-2f6a.zip" in err, err
    assert not (tmp_path / "out").exists()
