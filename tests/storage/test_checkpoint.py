"""Checkpoints and resume: exact resume, verification and fallback, retention, atomic saves, disk full, no pickle.

Everything here runs in-process on the tiny corpus; the subprocess and signal tests are in
test_reliability.py.
"""

import ast
import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from bricklm.cli import main
from bricklm.errors import UserError
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.runs import load_run
from bricklm.training.callbacks import Callback
from bricklm.training.interrupts import Interrupted
from runhelp import SignalAt, configs, copy_run, losses, metrics, steps, tensors, train, trainer

SRC = Path(__file__).resolve().parents[2] / "src" / "bricklm"


# --- exact resume ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [[], ["--optimizer", "muon"], ["--ema", "0.9"], ["--schedule", "wsd", "--positional", "rope", "--qk-norm"]],
    ids=["adamw", "muon", "ema", "wsd-rope"],
)
def test_resume_is_exact(tiny_corpus, tmp_path, extra):
    """2N steps straight == N steps, a real SIGINT, resume, N more: losses, weights, optimiser moments, RNG states."""
    # Dropout > 0 so the torch RNG matters; cosine schedule over the same max_iters in both, so the
    # interrupted run is a 2N-step run cut at N (not an N-step run extended), as a user's would be.
    flags = ["--dropout", "0.1", "--max-iters", "8", "--eval-interval", "3", *extra]
    train(tiny_corpus, tmp_path / "straight", *flags)
    with pytest.raises(Interrupted) as exc:
        train(tiny_corpus, tmp_path / "split", *flags, callbacks=[SignalAt(4)])
    assert exc.value.exit_code == 130
    assert "bricklm train --resume" in str(exc.value)
    assert steps(tmp_path / "split")[-1] == 4  # saved at the step it stopped, between evaluations
    train(tiny_corpus, tmp_path / "split", *flags, resume=True)

    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert len([x for x in losses(tmp_path / "straight") if x[0] == "step"]) == 8
    a = tensors(tmp_path / "straight" / "checkpoints" / "step-000000008")
    b = tensors(tmp_path / "split" / "checkpoints" / "step-000000008")
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a) and "rng.batch" in a
    for key in a:
        assert torch.equal(a[key], b[key]), key
    m1, m2 = load_run(tmp_path / "straight", "last").model, load_run(tmp_path / "split", "last").model
    for (name, p1), (_, p2) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(p1, p2), name


def test_resume_allows_and_states_a_changed_schedule(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--max-iters", "8", "--schedule", "constant"]) == 0
    out = capsys.readouterr().out
    assert "train.max_iters changed from 6 to 8" in out and "train.schedule changed from 'cosine' to 'constant'" in out
    assert steps(run)[-1] == 8


def test_resume_refuses_a_changed_model(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--n-embd", "32"]) == 1
    err = capsys.readouterr().err
    assert "model.n_embd was 16 and is now 32" in err and err.count("\n") == 1
    assert steps(run)[-1] == 6  # nothing written


def test_resume_survives_a_torn_last_metrics_line(tiny_run, tmp_path):
    """kill -9 in the middle of appending to metrics.jsonl leaves half a line; resume drops it."""
    run = copy_run(tiny_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 7, "lo')
    assert main(["train", "--resume", str(run), "--max-iters", "7"]) == 0
    assert [m["step"] for m in metrics(run) if "loss" in m] == [1, 2, 3, 4, 5, 6, 7]


def test_resume_refuses_a_corpus_with_another_vocabulary(tiny_run, tmp_path, capsys):
    from bricklm.text.prepare import prepare
    from conftest import TINY_TEXT

    (tmp_path / "posts").mkdir()
    for i in range(6):  # as conftest's tiny corpus, with "z" swapped for "Z": same size, other characters
        (tmp_path / "posts" / f"post{i}.md").write_text(f"# Post {i}\n\n" + TINY_TEXT.replace("z", "Z"))
    prepare([tmp_path / "posts"], tmp_path / "other", log=lambda *a, **k: None)
    run = copy_run(tiny_run, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--data", str(tmp_path / "other"), "--max-iters", "7"]) == 1
    assert "different vocabulary" in capsys.readouterr().err


def test_resume_applies_changed_optimizer_settings(tiny_corpus, tmp_path):
    """load_state_dict alone would silently bring back the saved weight decay; the new config wins."""
    train(tiny_corpus, tmp_path / "run")
    t = trainer(
        tiny_corpus, tmp_path / "run", "--max-iters", "7", "--weight-decay", "0.0", "--beta2", "0.9", resume=True
    )
    t.run()
    assert [g["weight_decay"] for g in t.optimizer.param_groups] == [0.0, 0.0]
    assert t.optimizer.param_groups[0]["betas"] == (0.9, 0.9)


# --- verification and fallback --------------------------------------------------------------


def newest(run):
    return ckpt.list_checkpoints(run, warn=False)[-1]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:-10]), "truncated"),
        (lambda f: f.write_bytes(f.read_bytes()[:-1] + bytes([f.read_bytes()[-1] ^ 1])), "sha256"),
        (lambda f: f.unlink(), "missing"),
    ],
    ids=["truncated", "bit-flip", "missing"],
)
def test_damaged_checkpoint_is_named_and_resume_falls_back(tiny_run, tmp_path, capsys, damage, message):
    run = copy_run(tiny_run, tmp_path / "run")
    bad = newest(run)
    damage(bad / "model.safetensors")
    with pytest.raises(UserError, match=message) as exc:
        ckpt.load_checkpoint(bad)
    assert str(bad / "model.safetensors") in str(exc.value)

    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"skipping checkpoint {bad.name}" in out and "model.safetensors" in out
    assert "resumed from" in out and "step-000000003" in out
    assert (run / "checkpoints" / f"corrupt-{bad.name}").is_dir()  # kept for a look, out of every listing
    ckpt.verify(newest(run))  # step 6 trained again and saved whole
    assert newest(run).name == bad.name


def test_checkpoint_without_manifest_is_ignored_with_a_warning(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    bad = newest(run)
    (bad / ckpt.MANIFEST).unlink()
    with pytest.warns(UserWarning, match="incomplete"):
        found = ckpt.list_checkpoints(run)
    assert bad not in found and found


def test_resume_with_no_valid_checkpoint_is_a_clear_error(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    for p in ckpt.list_checkpoints(run, warn=False):
        (p / "trainer.json").write_text("{}")
    assert main(["train", "--resume", str(run)]) == 1
    assert "no checkpoint in" in capsys.readouterr().err


# --- retention ------------------------------------------------------------------------------


def fake_checkpoint(run, step):
    d = run / ckpt.CHECKPOINTS / ckpt.step_dir_name(step)
    d.mkdir(parents=True)
    (d / ckpt.MANIFEST).write_text("{}")
    return d


@pytest.mark.parametrize("tie", [False, True])
def test_a_shared_weight_is_saved_once_and_only_it_may_be_missing(tie):
    from bricklm.config import ModelConfig
    from bricklm.model.gpt import GPT

    cfg = ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, tie_weights=tie)
    saved = ckpt.model_tensors(GPT(cfg))
    assert ("head.weight" in saved) is not tie  # the tied head is the token embedding: stored once
    model = GPT(cfg)
    ckpt.load_model_tensors(model, saved, "model.safetensors")
    torch.testing.assert_close(model.head.weight, saved["tok_emb.weight" if tie else "head.weight"])
    with pytest.raises(UserError, match="missing .'blocks.0.ffn.fc.weight'"):
        ckpt.load_model_tensors(model, {k: v for k, v in saved.items() if k != "blocks.0.ffn.fc.weight"}, "m")


def test_prune_keeps_the_last_n_and_the_best(tmp_path):
    dirs = [fake_checkpoint(tmp_path, s) for s in (10, 20, 30, 40, 50)]
    ckpt.mark_best(tmp_path, 20, 1.0)
    deleted = ckpt.prune(tmp_path, keep_last=2)
    assert sorted(deleted) == [dirs[0], dirs[2]]
    assert steps(tmp_path) == [20, 40, 50]
    ckpt.prune(tmp_path, keep_last=0)  # never below one: resume needs the newest
    assert steps(tmp_path) == [20, 50]


def test_checkpoints_sort_by_step_number(tmp_path):
    for s in (9, 10, 1_000_000_000):  # past the 9-digit padding, name order would be wrong
        fake_checkpoint(tmp_path, s)
    (tmp_path / ckpt.CHECKPOINTS / "step-notes").mkdir()
    assert steps(tmp_path) == [9, 10, 1_000_000_000]


def test_training_keeps_the_configured_number(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    train(tiny_corpus, run, "--eval-interval", "1", "--keep-last", "1")
    best = json.loads((run / "checkpoints" / "best.json").read_text())["step"]
    assert steps(run) == sorted({best, 6})


# --- atomic saves ---------------------------------------------------------------------------


def test_resaving_a_step_swaps_it_whole_and_a_crash_mid_swap_is_repaired(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    loaded = load_run(run, "last")
    c = ckpt.load_checkpoint(loaded.checkpoint)
    again = ckpt.save_checkpoint(run, 6, loaded.model, None, {}, c.config, c.tokenizer)
    ckpt.verify(again)
    # A kill between the two renames leaves the old one aside under a hidden name: clean_stale puts it back.
    aside = again.with_name(f".{again.name}.old-12345")
    os.replace(again, aside)
    (run / "checkpoints" / ".step-000000009.tmp-12345").mkdir()
    done = ckpt.clean_stale(run)
    assert "restored step-000000006" in done and "removed .step-000000009.tmp-12345" in done
    ckpt.verify(again)
    assert not list((run / "checkpoints").glob(".*"))


class DiskFullAt(Callback):
    """From step `step` on, every checkpoint file write gets half way and fails with ENOSPC."""

    def __init__(self, step, monkeypatch):
        self.step, self.monkeypatch = step, monkeypatch

    def on_step(self, trainer, step, loss):
        if step == self.step:

            def full(path, data):
                Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}").write_bytes(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            self.monkeypatch.setattr(ckpt, "atomic_write_bytes", full)


def test_disk_full_while_saving(tiny_corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    # keep_last=1: had pruning run before the new checkpoint was complete, step 3 would be gone too.
    with pytest.raises(UserError) as exc:
        train(tiny_corpus, run, "--keep-last", "1", callbacks=[DiskFullAt(4, monkeypatch)])
    message = str(exc.value)
    assert "No space left on device" in message and "step-000000006" in message and "\n" not in message
    assert "--resume" in message
    monkeypatch.undo()
    assert steps(run)[-1] == 3
    ckpt.verify(newest(run))
    assert not list((run / "checkpoints").glob(".*"))  # temp dir and half-written files cleaned up
    train(tiny_corpus, run, resume=True)  # and the lock was released: resume works
    assert steps(run)[-1] == 6


# --- never unpickle -------------------------------------------------------------------------


class Payload:
    """Unpickling this creates `marker`: stands in for any code an attacker's pickle would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def plant(path: Path, data: bytes, fix_manifest: bool) -> None:
    path.write_bytes(data)
    if fix_manifest:  # the attacker also rewrites the manifest, so size and sha256 match
        import hashlib

        m = json.loads((path.parent / ckpt.MANIFEST).read_text())
        m["files"][path.name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (path.parent / ckpt.MANIFEST).write_text(json.dumps(m))


def test_the_payload_is_live(tmp_path):
    """The test's own sanity check: this pickle does run code when unpickled (so refusing it matters)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))  # noqa: S301 - our own bytes, to prove the payload works
    assert marker.exists()


@pytest.mark.parametrize("fix_manifest", [False, True], ids=["manifest-untouched", "manifest-forged"])
@pytest.mark.parametrize("name", ["model.safetensors", "state.safetensors", "trainer.json"])
@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_planted_pickle_is_refused_and_never_runs(tiny_run, tmp_path, capsys, name, fix_manifest, kind):
    run = copy_run(tiny_run, tmp_path / "run")
    marker = tmp_path / "payload-ran"
    target = ckpt.best_checkpoint(run) / name
    if kind == "pickle":
        data = pickle.dumps(Payload(marker))
    else:  # torch.save's zip container, whose data.pkl torch.load would unpickle
        buf = tmp_path / "x.pt"
        torch.save({"weights": Payload(marker)}, buf)
        data = buf.read_bytes()
    plant(target, data, fix_manifest)
    assert main(["sample", "--run", str(run), "--max-new-tokens", "5"]) == 1
    err = capsys.readouterr().err
    assert name in err and err.count("\n") == 1
    assert ("not a valid" in err or "not valid JSON" in err) if fix_manifest else ("sha256" in err or "bytes" in err)
    assert not marker.exists()


def test_no_module_can_unpickle():
    """No pickle, marshal, shelve, dill, joblib, torch.load or np.load(allow_pickle=True) anywhere in src/."""
    banned_modules = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path.name, a.name) for a in node.names if a.name.split(".")[0] in banned_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in banned_modules:
                found.append((path.name, node.module))
            elif isinstance(node, ast.Attribute) and node.attr == "load":
                base = ast.unparse(node.value)
                if base in ("torch", "np", "numpy", "torch.serialization"):
                    found.append((path.name, f"{base}.load"))
            elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                found.append((path.name, "allow_pickle"))
    assert found == []


def test_keep_last_and_max_nonfinite_steps_are_flags():
    """The two settings this page adds parse as `bricklm train` flags (and so as [train] keys)."""
    model_cfg, train_cfg = configs("--keep-last", "3", "--max-nonfinite-steps", "2")
    assert (train_cfg.keep_last, train_cfg.max_nonfinite_steps) == (3, 2)
