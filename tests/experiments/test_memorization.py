"""`bricklm memorization` (bricklm.experiments.memorization): a model trained until it recites a small planted
corpus reports long copies; the same run before training, and held-out text, do not."""

import json
import shutil

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.experiments.memorization import memorization
from bricklm.storage.copying import COPYING
from bricklm.text.prepare import prepare
from conftest import tiny_flags

PLANTED = "my bank pin is 4096 and my cat is called ziggy stardust."
HELD_OUT = (
    "The held-out note is about other things entirely: rain on the window, tea going cold, trains that run "
    "late, a fox crossing the road at night, and the smell of bread from the bakery downstairs. "
)


@pytest.fixture(scope="module")
def recited(tmp_path_factory):
    """A run that saw its planted sentence for ~20 passes (its best checkpoint is step 0: val only rose)."""
    root = tmp_path_factory.mktemp("planted")
    src = root / "src"
    src.mkdir()
    for i in range(6):
        (src / f"a{i}.txt").write_text("\n".join([PLANTED] * 8))
    (src / "z-heldout.txt").write_text(HELD_OUT)  # read last: the tail split holds (most of) it out
    share = 0.8 * len(HELD_OUT) / (6 * 8 * (len(PLANTED) + 1) + len(HELD_OUT))
    prepare([src], root / "corpus", PrepareConfig(split="tail", val_fraction=share), log=lambda *a: None)
    run = root / "run"
    flags = tiny_flags(
        n_embd=32, block_size=32, batch_size=16, max_iters=100, eval_interval=50, learning_rate=1e-2, loss_levels="1.0"
    )
    assert main(["train", "--data", str(root / "corpus"), "--out", str(run), *flags]) == 0
    return run


def test_a_model_that_recites_its_text_reports_long_copies(recited):
    result = memorization(recited, samples=2, max_new_tokens=100, checkpoint="last", log=lambda line: None)
    assert result["step"] == 100
    assert result["longest_copied"] >= len(PLANTED) and result["copied_share"] > 0.5
    assert result["heldout"]["longest_copied"] < 32 and result["heldout"]["copied_share"] == 0
    first, *_, last = result["over_training"]
    assert (first["step"], last["step"]) == (0, 100)
    assert first["longest_copied"] < 10 and first["copied_share"] == 0  # before training: no copying
    assert last["longest_copied"] >= len(PLANTED)
    written = json.loads((recited / "memorization.json").read_text())
    assert written["longest_copied"] == result["longest_copied"] and written["copied_share"] == result["copied_share"]
    assert written["chance"]["chance_length"] < 32
    assert (recited / "memorization.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_prints_the_table_and_writes_the_files(recited, capsys):
    assert main(["memorization", "--run", str(recited), "--samples", "2", "--max-new-tokens", "60"]) == 0
    out = capsys.readouterr().out
    assert "| the model's samples |" in out and "| held-out text, same lengths |" in out
    assert "over training:" in out and "| best checkpoint | 0 |" in out
    assert f"wrote {recited / 'memorization.json'}" in out


def test_without_index_or_corpus_memorization_is_one_line(recited, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(recited, run)
    shutil.rmtree(run / COPYING)
    config = json.loads((run / "config.json").read_text())
    config["data"]["dir"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="cannot measure copying: .* is gone"):
        memorization(run, samples=1, max_new_tokens=5)
    assert main(["memorization", "--run", str(run), "--samples", "1"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
