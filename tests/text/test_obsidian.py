"""Obsidian's Markdown (bricklm.text.obsidian): wikilinks, embeds, callouts and comments become what its reading
view shows, in any Markdown file, never inside code."""

import json
import subprocess
import sys

import pytest

from bricklm.cli import main
from bricklm.text.corpus import clean, clean_document
from exporthelp import make_vault, make_zip, zip_folder


@pytest.mark.parametrize(
    "markdown, prose",
    [
        ("See [[Note]].", "See Note."),
        ("See [[Note|my alias]].", "See my alias."),
        ("See [[Note#Heading]].", "See Note."),
        ("See [[Note#Heading|there]].", "See there."),
        ("See [[Note^block-id]].", "See Note."),
        ("See [[#Heading]] above.", "See Heading above."),
        ("See [[Projects/Garden]].", "See Projects/Garden."),
        ("A picture ![[photo.png]] here.", "A picture here."),
        ("![[Other note#Section]]\n\nText.", "Text."),
        ("Done %%not yet%%.", "Done."),
        ("One %%two%% three %%four%% five", "One three five"),
        ("Before.\n\n%%\nHidden.\n\nStill hidden.\n%%\n\nAfter.", "Before.\n\nAfter."),
        ("Before.\n%%\nHidden.\n%%\nAfter.", "Before.\n\nAfter."),
        ("> [!note]- Why\n> Because.", "Why\nBecause."),
        ("> [!tip]\n> Just the text.", "Just the text."),
        ("> [!warning]+ Careful **now**\n> Body.\n>\n> More.", "Careful now\nBody.\n\nMore."),
        ("> [!quote]\n> > [!info] Inner\n> > Nested.", "Inner\nNested."),
        ("> A plain quote [!note] stays.", "> A plain quote [!note] stays."),
        ("| a | b |\n|---|---|\n| [[Note\\|alias]] | c |", "a, b\nalias, c"),
    ],
)
def test_obsidian_construct(markdown, prose):
    assert clean(markdown) == prose


@pytest.mark.parametrize(
    "markdown",
    [
        "Code `[[Note]]` and `%%x%%` and `![[embed]]` stay.",
        "```\n[[Note]]\n%%\nnot a comment\n%%\n> [!note] x\n```",
        "    [[indented code]]",
    ],
)
def test_obsidian_syntax_inside_code_stays(markdown):
    assert clean(markdown, code="keep") == markdown


@pytest.mark.parametrize(
    "markdown",
    ["100%% sure", "An [[unclosed link.", "[[]] is empty", "[[a\nb]] spans lines", "%%\nnever closed\n\nat all"],
)
def test_what_is_not_obsidian_syntax_stays_as_written(markdown):
    assert clean(markdown) == markdown


def test_obsidian_markup_is_counted():
    counts = clean_document("[[A]] [[B|b]] ![[c.png]] %%x%%\n\n> [!note] T\n> x").counts
    assert counts["wikilinks reduced to their text"] == 2
    assert counts["embeds dropped"] == 1
    assert counts["comments (%%) removed"] == 1
    assert counts["callout markers removed"] == 1


LINEAR = """
import json, sys
from bricklm.text.corpus import clean
print(json.dumps([clean(unit * 20000) for unit in json.loads(sys.argv[1])]))
"""


def test_obsidian_openers_clean_in_linear_time():
    """A guard against rescanning to the end from every opener (a hang), not a timing test."""
    units = ["[[", "![[", "[[a", "%%\n", "%% a\n\n", "> [!note]\n"]
    done = subprocess.run(
        [sys.executable, "-c", LINEAR, json.dumps(units)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out[:3] == [(unit * 20000).strip() for unit in units[:3]]
    assert out[3:5] == ["", ""]  # each "%%" line closes the comment the one before it opened
    assert out[5].startswith("[!note]\n[!note]")  # one quote: the first line is a callout's marker, the rest text


def test_a_vault_prepares_without_obsidian_syntax_or_its_settings(tmp_path, capsys):
    vault = make_vault(tmp_path)
    assert main(["prepare", str(vault), "--out", str(tmp_path / "corpus")]) == 0
    corpus = (tmp_path / "corpus" / "corpus.txt").read_text()
    assert corpus == (
        "First note\n\n"
        "I keep my Ideas in one place, linked to the garden project and to\n"
        "Reading List, with a picture:\n\n"
        "Why this vault\nNotes that link to each other are easier to find.\n\n"
        "Done.\n\n"
        "Ideas\n\n"
        "- Write about my first note.\n"
        "- Code stays as written: `[[not a link]]`"
    )
    out = capsys.readouterr().out
    assert "files read: 2\n" in out and "files ignored: 2 (extension: .png 1; hidden: 1)" in out  # .obsidian/
    assert "wikilinks reduced to their text: 4" in out and "callout markers removed: 1" in out


def test_a_zipped_vault_prepares_the_same_and_is_not_unpacked(tmp_path, capsys):
    vault = make_vault(tmp_path)
    assert main(["prepare", str(vault), "--out", str(tmp_path / "folder")]) == 0
    (tmp_path / "export").mkdir()
    archive = zip_folder(vault, tmp_path / "export" / "vault.zip")
    before = sorted(p.name for p in (tmp_path / "export").iterdir())
    capsys.readouterr()
    assert main(["prepare", str(archive), "--out", str(tmp_path / "zipped")]) == 0
    assert (tmp_path / "zipped" / "corpus.txt").read_bytes() == (tmp_path / "folder" / "corpus.txt").read_bytes()
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == before == ["vault.zip"]
    out = capsys.readouterr().out
    assert f"{archive} (zip archive): 2 files read from it, 3 ignored" in out  # a .png, and .obsidian's two files
    meta = json.loads((tmp_path / "zipped" / "meta.json").read_text())
    assert [f["path"] for f in meta["files_read"]] == [f"{archive}:vault/First note.md", f"{archive}:vault/Ideas.md"]


def test_hidden_members_of_a_zip_are_ignored_like_hidden_files(tmp_path):
    members = {"a.md": "Seen.", ".obsidian/x.md": "Hidden.", "__MACOSX/._a.md": "Resource fork.", "b/.c.md": "Hidden."}
    archive = make_zip(tmp_path / "notes.zip", members)
    assert main(["prepare", str(archive), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "corpus.txt").read_text() == "Seen."
