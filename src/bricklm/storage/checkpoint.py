"""Safe, atomic checkpoints: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint is a directory `RUN/checkpoints/step-000001500/` holding

    model.safetensors   the weights
    state.safetensors   optimiser moments, torch RNG states, the batch sampler's generator
    trainer.json        step, best val loss, optimiser hyperparameters, python/numpy RNG, counters
    config.json         the model and train configs
    tokenizer.json      the vocabulary
    manifest.json       written last: every file's size and sha256

It is built in a hidden temporary directory and renamed into place only once the
manifest is on disk, so a crash leaves either a whole checkpoint or none. A directory
without a manifest is incomplete and ignored with a warning; loading checks every
file against the manifest and names the one that doesn't match.

A save that fails with an OSError (disk full) is a UserError and leaves every earlier
checkpoint as it was; prune() runs only after a save is complete and never deletes the best.
load_latest() is what --resume uses: the newest checkpoint that verifies, warning about (and
returning) newer ones that don't. clean_stale() removes what a killed save left behind.
Nothing here unpickles: tensors go through safetensors, the rest through json.

    save_checkpoint(run_dir, step, model, optimizer, trainer_state, config, tokenizer_dict)
    ckpt = load_checkpoint(latest_checkpoint(run_dir))
    ckpt, corrupt = load_latest(run_dir, warn=print)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from bricklm.errors import UserError
from bricklm.files import atomic_write_bytes, atomic_write_json, clean_swap, json_bytes, swap_in, temp_sibling

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
BEST = "best.json"
FILES = ("model.safetensors", "state.safetensors", "trainer.json", "config.json", "tokenizer.json")
STEP_DIR = re.compile(r"step-(\d+)")
# Fault-injection hook for the tests: "MIN_STEP:SECONDS" sleeps after each file of a save at step >= MIN_STEP,
# so a test can kill -9 or signal a process while a checkpoint is half written.
PAUSE_ENV = "BRICKLM_TEST_SAVE_PAUSE"


# --- what goes into a checkpoint -----------------------------------------------------------


def model_tensors(weights: torch.nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's state dict (or a state dict) with each shared tensor once (tied head = token embedding),
    contiguous, on CPU: what model.safetensors holds."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    seen: dict[tuple, str] = {}
    out = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen[key] = name
        out[name] = t.detach().to("cpu").contiguous()
    return out


def load_model_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load saved weights into model; any name or shape that doesn't fit is a UserError naming `source`."""
    check_shapes(model.state_dict(), tensors, source)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # A parameter the model holds under two names (a tied head is the token embedding) is saved once (model_tensors).
    tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
    if set(missing) - tied or unexpected:
        raise UserError(
            f"{source} does not fit this model (missing {sorted(set(missing) - tied)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}); was it saved with a different config?"
        )


def check_shapes(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], source: str) -> None:
    """Every tensor whose name `expected` knows must have its shape there; else a UserError naming `source`."""
    for name, t in tensors.items():
        if name in expected and tuple(t.shape) != tuple(expected[name].shape):
            raise UserError(
                f"{source} does not fit this model: {name} has shape {tuple(t.shape)}, the model's config says "
                f"{tuple(expected[name].shape)}; was it saved with a different config?"
            )


def rng_state(generator: torch.Generator | None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every random number generator a run uses, as JSON and tensors."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    json_part = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    if generator is not None:
        tensors["rng.batch"] = generator.get_state()
    return json_part, tensors


def restore_rng(json_part: dict[str, Any], tensors: dict[str, torch.Tensor], generator: torch.Generator | None):
    version, internal, gauss = json_part["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json_part["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    if generator is not None and "rng.batch" in tensors:
        generator.set_state(tensors["rng.batch"])


def optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Split the optimiser state into JSON (hyperparameters per group) and tensors (moments per parameter)."""
    sd = optimizer.state_dict()
    tensors = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = t.detach().to("cpu").contiguous()
    return sd["param_groups"], tensors


def restore_optimizer(
    optimizer: torch.optim.Optimizer,
    groups: list[dict],
    tensors: dict[str, torch.Tensor],
    keep_hyperparameters: bool = True,
):
    """Load the saved moments and step counts. With keep_hyperparameters (the default) weight decay, betas
    and the like stay as `optimizer` was built, i.e. from the config now in force: a resume that changes
    them gets what it asked for (load_state_dict alone would silently bring the old values back)."""
    current = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    state: dict[int, dict[str, torch.Tensor]] = {}
    try:
        for name, t in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = t
        for g in groups:  # JSON turns tuples into lists; AdamW wants its betas back as a tuple
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"the saved optimiser state does not fit this model's optimiser ({exc})") from None
    if keep_hyperparameters:
        for g, hp in zip(optimizer.param_groups, current, strict=True):
            g.update(hp)


# --- saving ------------------------------------------------------------------------------


def step_dir_name(step: int) -> str:
    return f"step-{step:09d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    weights: torch.nn.Module | dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    tokenizer: dict[str, Any],
    generator: torch.Generator | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a complete checkpoint for `step` and return its directory.

    weights: the model, or the state dict to save in its place (finetune's merged LoRA weights).
    extra_tensors go into state.safetensors beside the optimiser (e.g. finetune's LoRA adapters).
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = temp_sibling(final)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        rng_json, rng_tensors = rng_state(generator)
        groups, optim_tensors = optimizer_parts(optimizer) if optimizer is not None else ([], {})
        blobs = {
            "model.safetensors": st_save(model_tensors(weights)),
            "state.safetensors": st_save({**optim_tensors, **rng_tensors, **(extra_tensors or {})}),
            "trainer.json": json_bytes({**trainer_state, "step": step, "optimizer": groups, "rng": rng_json}),
            "config.json": json_bytes(config),
            "tokenizer.json": json_bytes(tokenizer),
        }
        manifest = {"format": "bricklm-checkpoint/1", "step": step, "files": {}}
        for name, data in blobs.items():
            atomic_write_bytes(tmp / name, data)
            manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            _test_pause(step)
        atomic_write_json(tmp / MANIFEST, manifest)  # last: its presence means the rest is complete
        swap_in(tmp, final)  # an existing checkpoint of this step is replaced whole
    except OSError as exc:  # disk full, quota, permissions: the user's to fix, and nothing old was touched
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(
            f"could not save checkpoint {final}: {exc.strerror or exc}; earlier checkpoints are intact "
            f"(free some space, then continue with `bricklm train --resume {run_dir}`)"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _test_pause(step: int) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if spec:
        min_step, seconds = spec.split(":")
        if step >= int(min_step):
            time.sleep(float(seconds))


def clean_stale(run_dir: str | Path) -> list[str]:
    """Remove what a killed save left behind (hidden temp dirs); restore a checkpoint caught mid-swap.

    Only call this while holding the run's lock (files.RunLock): a live save's temp dir looks the same.
    Returns the names removed or restored.
    """
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    steps = sorted({m.group(1) for p in root.iterdir() if (m := re.fullmatch(r"\.(step-\d+)\.(tmp|old)-\d+", p.name))})
    done = []
    for name in steps:
        done += clean_swap(root / name, complete=lambda p: (p / MANIFEST).is_file())
    return done


def mark_best(run_dir: str | Path, step: int, val_loss: float) -> None:
    atomic_write_json(
        Path(run_dir) / CHECKPOINTS / BEST, {"step": step, "val_loss": val_loss, "dir": step_dir_name(step)}
    )


def prune(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete complete checkpoints beyond the newest `keep_last`, never the best one. Returns what was deleted."""
    best = best_checkpoint(run_dir, required=False)
    complete = list_checkpoints(run_dir, warn=False)
    doomed = [p for p in complete[: max(0, len(complete) - max(1, keep_last))] if p != best]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed


# --- finding and loading -----------------------------------------------------------------


def list_checkpoints(run_dir: str | Path, warn: bool = True) -> list[Path]:
    """Complete checkpoints, oldest first; incomplete ones (no manifest) are skipped with a warning."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for p in sorted(root.glob("step-*"), key=lambda p: (len(p.name), p.name)):  # numeric order, any width
        if not p.is_dir() or not STEP_DIR.fullmatch(p.name):
            continue
        if (p / MANIFEST).is_file():
            found.append(p)
        elif warn:
            warnings.warn(f"ignoring incomplete checkpoint {p} (no {MANIFEST})", stacklevel=2)
    return found


def latest_checkpoint(run_dir: str | Path, required: bool = True) -> Path | None:
    found = list_checkpoints(run_dir)
    if not found and required:
        raise UserError(f"no complete checkpoint in {run_dir}; is it a bricklm run directory?")
    return found[-1] if found else None


def best_checkpoint(run_dir: str | Path, required: bool = True) -> Path | None:
    """The best-val checkpoint if one is recorded and complete, else the latest."""
    pointer = Path(run_dir) / CHECKPOINTS / BEST
    if pointer.is_file():
        try:
            name = json.loads(pointer.read_text(encoding="utf-8"))["dir"]
            # Only a checkpoint of this run: a pointer edited to reach elsewhere is ignored like a broken one.
            path = Path(run_dir) / CHECKPOINTS / name if STEP_DIR.fullmatch(name) else None
        except (ValueError, KeyError, TypeError):
            path = None
        if path is not None and (path / MANIFEST).is_file():
            return path
    return latest_checkpoint(run_dir, required=required)


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]
    trainer: dict[str, Any]
    config: dict[str, Any]
    tokenizer: dict[str, Any]


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of checkpoint directory `path`, checked for shape; any problem is a UserError naming it."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is incomplete: no {MANIFEST}") from None
    except (OSError, ValueError):  # ValueError covers bad JSON and bad UTF-8
        raise UserError(f"{path / MANIFEST} is not a valid bricklm manifest") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise UserError(f"{path / MANIFEST} is not a valid bricklm manifest")
    for name in FILES:
        entry = files.get(name)
        ok = isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
        if not ok:
            raise UserError(f"{path / MANIFEST} does not list {name} with its size and sha256")
    return manifest


def read_verified(path: Path, name: str, manifest: dict[str, Any]) -> bytes:
    """The bytes of one checkpoint file, after checking them against the manifest (read once: no check-then-swap)."""
    f = path / name
    expected = manifest["files"][name]
    try:
        data = f.read_bytes()
    except FileNotFoundError:
        raise UserError(f"checkpoint file missing: {f}") from None
    except OSError as exc:
        raise UserError(f"cannot read checkpoint file {f}: {exc.strerror or exc}") from None
    if len(data) != expected["size"]:
        raise UserError(f"checkpoint file {f} has {len(data)} bytes, manifest says {expected['size']} (truncated?)")
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise UserError(f"checkpoint file {f} does not match its sha256 in the manifest (altered or corrupt)")
    return data


def verify(path: Path) -> dict[str, Any]:
    """Check every file against the manifest; a missing, truncated or altered file is an error naming it."""
    manifest = read_manifest(path)
    for name in FILES:
        read_verified(path, name, manifest)
    return manifest


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Verify and parse a checkpoint directory. Only safetensors and JSON parsers ever see the bytes."""
    path = Path(path)
    manifest = read_manifest(path)
    blobs = {name: read_verified(path, name, manifest) for name in FILES}

    def tensors(name: str) -> dict[str, torch.Tensor]:
        try:
            return st_load(blobs[name])
        except (SafetensorError, ValueError, TypeError, OverflowError) as exc:
            raise UserError(f"{path / name} is not a valid safetensors file: {exc}") from None

    def js(name: str) -> dict[str, Any]:
        try:
            obj = json.loads(blobs[name].decode("utf-8"))
        except ValueError as exc:
            raise UserError(f"{path / name} is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path / name} is not a JSON object")
        return obj

    config, trainer = js("config.json"), js("trainer.json")
    if not isinstance(config.get("model"), dict) or not isinstance(config.get("train", {}), dict):
        raise UserError(f"{path / 'config.json'} is not a bricklm config (it needs model and train tables)")
    if not isinstance(trainer.get("step"), int) or isinstance(trainer.get("step"), bool):
        raise UserError(f"{path / 'trainer.json'} has no step number")
    return Checkpoint(
        path, tensors("model.safetensors"), tensors("state.safetensors"), trainer, config, js("tokenizer.json")
    )


def load_latest(run_dir: str | Path, warn=print) -> tuple[Checkpoint, list[Path]]:
    """The newest checkpoint that verifies, and the newer ones that didn't (each reported through `warn`).

    This is what --resume uses: a checkpoint truncated or altered after it was written costs the
    steps since the one before it, not the run.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise UserError(f"no complete checkpoint in {run_dir}; is it a bricklm run directory?")
    bad: list[Path] = []
    for path in reversed(found):
        try:
            return load_checkpoint(path), bad
        except UserError as exc:
            warn(f"warning: skipping checkpoint {path.name}: {exc}")
            bad.append(path)
    raise UserError(f"no checkpoint in {run_dir} passes verification (newest: {bad[0].name}); see the warnings above")


def set_aside(paths: list[Path]) -> list[Path]:
    """Rename checkpoints that failed verification to corrupt-step-..., out of every listing, kept for a look."""
    moved = []
    for p in paths:
        target = p.with_name(f"corrupt-{p.name}")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(p, target)
        moved.append(target)
    return moved
