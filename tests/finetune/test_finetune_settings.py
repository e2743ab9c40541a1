"""finetune's settings through the one merge: defaults (or the resumed run's) < a recipe's tables < flags.

FinetuneConfig is checked like every config (errors name finetune.<key>), a resumed run keeps what it began with,
Python and the command line give the same run, and `train --resume` of a fine-tuned run goes through the library.
"""

import json
import shutil
from dataclasses import asdict

import pytest

from bricklm.cli import main
from bricklm.config import FINETUNE_TRAIN_DEFAULTS, LORA_TRAIN_DEFAULTS, FinetuneConfig
from bricklm.errors import UserError
from bricklm.fields import field_names
from bricklm.finetune.settings import resolve_settings
from bricklm.finetune.trainer import finetune
from conftest import FT_FLAGS, TINY_CHATS, write_jsonl

# FT_FLAGS as a Python caller writes them
FT_OVERRIDES = {"max_iters": 4, "eval_interval": 2, "batch_size": 4, "eval_iters": 1, "device": "cpu"}


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("chats") / "chats.jsonl", TINY_CHATS)


@pytest.fixture(scope="module")
def lora_run(tiny_run, chats, tmp_path_factory):
    """A LoRA fine-tune of the tiny run, made from Python (tests only read it, or copy it first)."""
    out = tmp_path_factory.mktemp("ft") / "lora"
    config = FinetuneConfig(data=str(chats), lora_rank=2)
    finetune(config, source=tiny_run, out=out, overrides=FT_OVERRIDES, log=quiet, progress=False)
    return out


def recipe(tmp_path, text: str):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_a_new_finetune_merges_defaults_then_the_recipe_then_flags(tiny_run, tmp_path):
    plain = resolve_settings(source=tiny_run)
    assert plain.config == FinetuneConfig()
    assert plain.train_cfg.max_iters == FINETUNE_TRAIN_DEFAULTS["max_iters"]
    assert plain.train_cfg.device == "cpu"  # the source run's
    toml = (
        '[finetune]\nlora_rank = 2\nunknown_chars = "drop"\ndata = "a.jsonl"\n[train]\nmax_iters = 7\nbatch_size = 3\n'
    )
    path = recipe(tmp_path, toml)
    s = resolve_settings(source=tiny_run, recipe=path)
    assert s.config == FinetuneConfig(data="a.jsonl", lora_rank=2, lora_alpha=4.0, unknown_chars="drop")
    s = resolve_settings(source=tiny_run, recipe=path, overrides={"lora_rank": 4, "max_iters": 9})
    assert s.config == FinetuneConfig(data="a.jsonl", lora_rank=4, lora_alpha=8.0, unknown_chars="drop")
    assert (s.train_cfg.max_iters, s.train_cfg.batch_size) == (9, 3)
    assert s.train_cfg.learning_rate == LORA_TRAIN_DEFAULTS["learning_rate"]  # LoRA's default rate
    # A FinetuneConfig from Python stands where the defaults stood: the recipe and the overrides still win.
    s = resolve_settings(FinetuneConfig(heldout_fraction=0.3, lora_rank=1), source=tiny_run, recipe=path)
    assert (s.config.heldout_fraction, s.config.lora_rank) == (0.3, 2)


def test_a_resume_merges_the_saved_run_then_the_recipe_then_flags(lora_run, tmp_path):
    saved = json.loads((lora_run / "config.json").read_text())
    s = resolve_settings(resume=lora_run)
    assert asdict(s.config) == {k: saved["finetune"][k] for k in field_names(FinetuneConfig)}
    assert s.config.lora_rank == 2 and s.train_cfg.max_iters == 4 and s.source_run is None
    # The recipe may repeat what the run keeps (its rank), and change the rest.
    path = recipe(tmp_path, '[finetune]\ndata = "b.jsonl"\nlora_rank = 2\n[train]\nmax_iters = 5\n')
    s = resolve_settings(resume=lora_run, recipe=path)
    assert (s.config.data, s.config.lora_rank, s.train_cfg.max_iters) == ("b.jsonl", 2, 5)
    s = resolve_settings(resume=lora_run, recipe=path, overrides={"data": "c.jsonl", "max_iters": 6})
    assert (s.config.data, s.train_cfg.max_iters) == ("c.jsonl", 6)
    assert s.table["from"] == saved["finetune"]["from"]  # where the run came from stays in config.json


@pytest.mark.parametrize(
    "table, needle",
    [
        ("lora_rank = 3", "finetune.lora_rank = 3 in"),
        ("lora_alpha = 1.0", "finetune.lora_alpha = 1.0 in"),
        ('unknown_chars = "drop"', "finetune.unknown_chars = 'drop' in"),
        ("heldout_fraction = 0.5", "finetune.heldout_fraction = 0.5 in"),
    ],
)
def test_a_recipe_cannot_change_what_a_resumed_run_keeps(lora_run, tmp_path, table, needle):
    with pytest.raises(UserError, match="cannot change a resumed fine-tuning run") as e:
        resolve_settings(resume=lora_run, recipe=recipe(tmp_path, f"[finetune]\n{table}\n"))
    assert needle in str(e.value)


def test_a_resume_refuses_settings_it_keeps(lora_run):
    with pytest.raises(UserError, match="--lora-rank cannot be used with --resume"):
        resolve_settings(resume=lora_run, overrides={"lora_rank": 2})
    with pytest.raises(UserError, match="a FinetuneConfig cannot be used with --resume"):
        resolve_settings(FinetuneConfig(), resume=lora_run)


@pytest.mark.parametrize(
    "table, needle",
    [
        ("lora_rnk = 2", "unknown key finetune.lora_rnk"),
        ('lora_rank = "two"', "finetune.lora_rank must be a int"),
        ("lora_rank = -1", "finetune.lora_rank must be >= 0"),
        ("lora_rank = 17", "n_embd 16); give at most 16 (finetune.lora_rank)"),
        ("lora_rank = 2\nlora_alpha = nan", "--lora-alpha must be a finite number > 0 (0: 2 x rank), got nan"),
        ("lora_alpha = 4.0", "--lora-alpha applies only to LoRA: give --lora-rank too (finetune.lora_alpha"),
        ('unknown_chars = "keep"', "finetune.unknown_chars must be one of add, drop; got 'keep'"),
        ("heldout_fraction = 1.5", "finetune.heldout_fraction must be between 0 and 1, got 1.5"),
        ('data = ""', "finetune.data must name a JSONL file"),
    ],
)
def test_a_bad_finetune_table_is_one_line_naming_the_key(tiny_run, tmp_path, capsys, table, needle):
    out = tmp_path / "out"
    path = recipe(tmp_path, f"[finetune]\n{table}\n")
    assert main(["finetune", "--from", str(tiny_run), "--config", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: ") and needle in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_bad_flag_names_the_same_key(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["finetune", "--from", str(tiny_run), "--heldout-fraction", "1.5", "--out", str(out)]) == 1
    assert "finetune.heldout_fraction must be between 0 and 1, got 1.5" in capsys.readouterr().err


def test_a_damaged_saved_table_names_the_file(lora_run, tmp_path):
    config = json.loads((lora_run / "config.json").read_text())
    config["finetune"]["lora_rank"] = "2"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as e:
        resolve_settings(resume=run)
    message = f"{run / 'config.json'}: finetune.lora_rank must be a int, got '2' (str); the run's config is damaged"
    assert str(e.value) == message


def test_python_and_the_command_line_make_the_same_run(tiny_run, chats, lora_run, tmp_path):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "finetune",
                "--from",
                str(tiny_run),
                "--data",
                str(chats),
                "--lora-rank",
                "2",
                "--out",
                str(out),
                *FT_FLAGS,
            ]
        )
        == 0
    )
    from_cli, from_python = (json.loads((run / "config.json").read_text()) for run in (out, lora_run))
    for table in ("finetune", "train", "model"):
        assert from_cli[table] == from_python[table], table


def test_train_resume_of_a_finetuned_run_goes_through_the_library(lora_run, tmp_path):
    run = shutil.copytree(lora_run, tmp_path / "run")
    result, run_dir = finetune(resume=run, overrides={"max_iters": 6}, log=quiet, progress=False)
    assert run_dir == run and result["steps"] == 6
    # `train --resume` hands its flags over, --data (the conversations) among them.
    more = write_jsonl(tmp_path / "more.jsonl", TINY_CHATS[::-1])
    assert main(["train", "--resume", str(run), "--data", str(more), "--max-iters", "8"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["finetune"]["data"] == str(more) and config["finetune"]["lora_rank"] == 2
    assert json.loads((run / "summary.json").read_text())["steps"] == 8
