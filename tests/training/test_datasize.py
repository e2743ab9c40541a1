"""How much writing is enough (bricklm.training.datasize): tokens per parameter, passes, and the warning."""

from bricklm.cli import main
from bricklm.training.datasize import DataSize
from conftest import tiny_flags


def test_the_blogs_overfitting_run_is_warned_about():
    # configs/seed/overfit-800k.toml on the blog's corpus (docs/results.md): val loss was best after 25 passes.
    size = DataSize(parameters=817_771, train_tokens=327_330, tokens_per_step=64 * 128, steps=3_000)
    assert round(size.tokens_per_parameter, 2) == 0.40 and round(size.passes, 1) == 75.1
    assert size.line() == (
        "327,330 training tokens for 817,771 parameters (0.40 per parameter); 3,000 steps of 8,192 tokens = "
        "75.1 passes over the training text"
    )
    assert size.warning().startswith("this run will mostly memorise its text: 75 passes over it")


def test_runs_that_did_not_overfit_are_not_warned_about():
    # The ablation model at 2,000 steps (1.5 tokens per parameter, 3 passes) and the default run on the
    # built-in corpus (about 6 passes): neither overfitted in docs/results.md or the README.
    assert DataSize(214_891, 327_330, 16 * 32, 2_000).warning() is None
    assert DataSize(834_411, 420_000, 32 * 128, 600).warning() is None
    assert DataSize(10_000, 327_330, 64 * 128, 3_000).warning() is None  # many passes, but plenty of text


def test_the_nearest_measured_run_says_what_to_expect():
    # The README's default model on the blog's whole text is a measured row of docs/inside.md's table.
    size = DataSize(parameters=834_151, train_tokens=327_330, tokens_per_step=32 * 128, steps=600)
    assert size.expectation() == (
        "the nearest run measured (docs/inside.md): the blog, 327,330 tokens for 835,179 parameters, reached val "
        "loss 1.56 per character (best after 18 passes)"
    )
    # A sixteenth of the text: the small model measured on it memorised after ~80 passes.
    assert "first sixteenth" in DataSize(120_000, 21_000, 4096, 600).expectation()


def test_train_and_prepare_say_where_the_run_sits(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    # Planned: ~100k parameters for ~37 passes over ~28k tokens; the time budget stops it at its first step.
    flags = tiny_flags(n_layer=2, n_embd=64, block_size=32, batch_size=32, max_iters=1000, max_seconds=0.001)
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *flags]) == 0
    out = capsys.readouterr().out
    assert "data: " in out and "passes over the training text" in out and "the nearest run measured" in out
    assert "warning: this run will mostly memorise its text" in out
    (tmp_path / "note.txt").write_text("A short note, far too little for the default model. " * 20)
    assert main(["prepare", str(tmp_path / "note.txt"), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert (
        "the default model and training: " in out
        and "the nearest run measured" in out
        and "warning: with the defaults, this run will mostly" in out
    )


def test_the_warning_follows_the_measured_turns():
    # docs/inside.md's data-size table: the 122k model on a quarter of the built-in corpus (0.86 tokens per
    # parameter) turned after 55 passes; on half the blog (1.35 per parameter) it still improved after 38.
    assert DataSize(121_063, 104_606, 32 * 128, 1_500).warning() is not None
    assert DataSize(121_579, 163_665, 32 * 128, 1_500).warning() is None
