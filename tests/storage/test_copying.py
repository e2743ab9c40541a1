"""A run's copying index (bricklm.storage.copying): made when training starts, on first use for older runs,
and one line, with sampling going on as before, when the corpus a run trained on is gone."""

import json
import shutil

import pytest

from bricklm.cli import main
from bricklm.storage.copying import COPYING, run_index
from conftest import TINY_FLAGS


@pytest.fixture
def old_run(tiny_run, tmp_path):
    """A copy of the tiny run as a run trained before the index existed: no RUN/copying."""
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / COPYING)
    return run


def set_data_dir(run, path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["data"]["dir"] = str(path)
    (run / "config.json").write_text(json.dumps(config))


def test_training_indexes_its_text(tiny_run, tiny_corpus):
    info = json.loads((tiny_run / COPYING / "index.json").read_text())
    meta = json.loads((tiny_corpus / "meta.json").read_text())
    assert info["characters"] == meta["train_tokens"]  # a character corpus: one token per character
    assert info["corpus_sha256"] == meta["sha256"]["corpus.txt"]


def test_an_old_run_gets_its_index_on_first_use(old_run):
    said = []
    index, why = run_index(old_run, log=said.append)
    assert why is None and (old_run / COPYING / "index.json").is_file()
    assert len(said) == 1 and said[0].startswith("copying meter: indexed ")
    index.close()
    index, _ = run_index(old_run, log=said.append)  # built once
    index.close()
    assert len(said) == 1


def test_reading_only_never_builds(old_run):
    index, why = run_index(old_run, build=False)
    assert index is None and "has no copying index" in why and not (old_run / COPYING).exists()


def test_corpus_gone_is_one_line_and_sample_works_as_before(old_run, tmp_path, capsys):
    set_data_dir(old_run, tmp_path / "moved-away")
    index, why = run_index(old_run)
    assert index is None and "moved-away" in why and "gone" in why
    assert main(["sample", "--run", str(old_run), "--max-new-tokens", "30", "--prompt", "The "]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("The ") and len(out.rstrip("\n")) == 34
    assert err.splitlines() == [f"copied: not measured: {why}"]


def test_a_corpus_changed_since_training_is_not_indexed(old_run, tiny_corpus, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(tiny_corpus, changed)
    with open(changed / "corpus.txt", "a", encoding="utf-8") as f:
        f.write("more")
    set_data_dir(old_run, changed)
    index, why = run_index(old_run)
    assert index is None and "has changed since it trained there" in why


def test_sample_says_what_each_sample_copied(tiny_run, capsys):
    assert main(["sample", "--run", str(tiny_run), "--max-new-tokens", "40", "--num-samples", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("copied: longest ") for line in err)
    assert all(line.endswith("of the text in spans of 32+") for line in err)
    assert main(["sample", "--run", str(tiny_run), "--min-span", "0"]) == 1
    assert "--min-span must be >= 1" in capsys.readouterr().err


def test_no_index_when_asked_for_none(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS, "--no-copy-index"]) == 0
    assert not (run / COPYING).exists()
