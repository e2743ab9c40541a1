"""Jupyter notebooks (bricklm.text.readers.jupyter): markdown cells as Markdown, code cells as code blocks
(dropped unless --code keep), outputs never, the opening heading as the title."""

import json

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.jupyter import READER
from exporthelp import notebook, notebook_v3

CELLS = [
    ("markdown", "# Exploring my runs\n\nWhat the **loss** did, see [the docs](https://example.com)."),
    ("code", "import numpy as np\nlosses = np.load('losses.npy')"),
    ("raw", "raw cell: for nbconvert only"),
    ("markdown", "## Results\n\n- it went down\n- then flat"),
    ("code", "print('```')  # backticks in code"),
]


def read(tmp_path, cells=CELLS, **settings):
    (tmp_path / "runs.ipynb").write_text(notebook(cells))
    return list(READER.read(FileEntry(tmp_path / "runs.ipynb"), PrepareConfig(**settings)))


def test_markdown_cells_are_read_code_dropped_outputs_never(tmp_path):
    [doc] = read(tmp_path)
    assert doc.text == "What the loss did, see the docs.\n\nResults\n\n- it went down\n- then flat"
    assert doc.markup["code blocks dropped"] == 2 and doc.markup["raw notebook cells dropped"] == 1


def test_code_keep_keeps_code_cells_as_fenced_blocks(tmp_path):
    [doc] = read(tmp_path, code="keep")
    assert "```python\nimport numpy as np\nlosses = np.load('losses.npy')\n```" in doc.text
    assert "````python\nprint('```')  # backticks in code\n````" in doc.text  # a fence longer than what it holds
    assert "OUTPUT" not in doc.text and "RESULT" not in doc.text


def test_the_opening_heading_is_the_title(tmp_path):
    assert read(tmp_path, titles="keep")[0].text.startswith("Exploring my runs\n\nWhat the loss did")
    assert not read(tmp_path)[0].text.startswith("Exploring")  # dropped by default, as every source's title
    [doc] = read(tmp_path, [("markdown", "No heading first.\n\n# Later")], titles="keep")
    assert doc.text == "No heading first.\n\nLater"


def test_a_format_3_notebook_is_skipped_with_the_reason(tmp_path):
    (tmp_path / "old.ipynb").write_text(notebook_v3("Old text."))
    [skipped] = READER.read(FileEntry(tmp_path / "old.ipynb"), PrepareConfig())
    assert "notebook format 3 or older" in skipped.reason


def test_notebooks_in_a_folder_prepare_beside_markdown(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "runs.ipynb").write_text(notebook(CELLS))
    (tmp_path / "src" / "note.md").write_text("A note.")
    (tmp_path / "src" / "data.json").write_text(json.dumps({"not": "a notebook"}))
    assert main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--code", "keep"]) == 0
    corpus = (tmp_path / "out" / "corpus.txt").read_text()
    assert corpus.startswith("A note.\n\nWhat the loss did") and "```python" in corpus
    assert "files read: 2" in capsys.readouterr().out


def test_a_notebook_past_json_max_mb_is_skipped_saying_which_setting(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "huge.ipynb").write_text(notebook([("markdown", "Big. " * 300_000)]))  # 1.5 MB
    (tmp_path / "src" / "note.md").write_text("A note.")
    assert main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--json-max-mb", "1"]) == 0
    assert (
        f"{tmp_path}/src/huge.ipynb: larger than --json-max-mb 1 MB (raise it to read this)" in capsys.readouterr().out
    )
    assert (tmp_path / "out" / "corpus.txt").read_text() == "A note."
