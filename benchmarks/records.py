"""A track's recipe over several seeds: whole-split val at the time budget, mean and spread (docs/records.md).

    python benchmarks/records.py configs/speedrun-cpu.toml --seeds 3            # the 60-second track
    python benchmarks/records.py configs/best-10min-cpu.toml --seeds 3          # the 10-minute track
    python benchmarks/records.py configs/speedrun-cpu.toml --set optimizer=adamw --label "no Muon"
    python benchmarks/records.py reference --seconds 60 --seeds 3               # the blog-style loop's baseline

Each seed trains in its own subprocess (`python -m bricklm train`, exactly what a user runs), one
after another, on the blog's text prepared with `--split tail` (or --corpus). The figure is the
validation loss over the whole held-out split at the last evaluation, which the recipe's
max_seconds budget ends on; the time is wall time from the first step, evaluations included.
--set changes one recipe key for a candidate (repeatable); --label names the row. Results are
appended to benchmarks/results/records.jsonl with the machine and its load average before and after.
`reference` instead of a recipe trains the blog-style loop (benchmarks/reference_seed.py: the blog's
~800k model, batch 64 x block 128, AdamW at a constant 1e-3) for --seconds of wall time in this process,
then scores the whole val split the same way; that time includes the scoring, as a recipe's does.
Measure alone: anything else running on the cores changes how far a budget gets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, need, prepare_tail, shared_data  # noqa: E402  (benchmarks/ is not a package)


def flag(setting: str) -> list[str]:
    """'optimizer=adamw' -> ['--optimizer', 'adamw']; a bare 'qk_norm' -> ['--qk-norm']."""
    key, _, value = setting.partition("=")
    name = "--" + key.replace("_", "-")
    if value in ("true", "false"):
        return [name if value == "true" else "--no-" + key.replace("_", "-")]
    return [name, value] if value else [name]


def one_run(recipe: Path, corpus: Path, out: Path, seed: int, settings: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bricklm",
        "train",
        "--config",
        str(recipe),
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--seed",
        str(seed),
        "--device",
        "cpu",
    ] + [f for s in settings for f in flag(s)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"seed": seed, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    summary = json.loads((out / "summary.json").read_text())
    trainer = json.loads(sorted((out / "checkpoints").glob("step-*"))[-1].joinpath("trainer.json").read_text())
    walls = trainer["train_state"]["extra"].get("wall_at_eval", [])
    return {
        "seed": seed,
        "val_loss": round(summary["val_loss"], 4),
        "best_val_loss": round(summary["best_val_loss"], 4),
        "steps": summary["steps"],
        "wall_s": walls[-1][1] if walls else None,
        "stop_reason": summary["stop_reason"],
        "tokens_per_s": round(summary["tokens_per_s"]),
        "parameters": summary["parameters"],
    }


def reference_run(corpus: Path, seconds: float, seed: int) -> dict:
    """The blog-style loop for `seconds` of wall time (its last step may end past them), then whole-split val."""
    import torch

    import reference_seed as ref
    from bricklm.text.data import load_corpus
    from bricklm.training.datasets import full_split_loss

    train, val, tokenizer, _ = load_corpus(corpus)
    torch.manual_seed(seed)
    block = 128
    model = ref.ReferenceGPT(tokenizer.vocab_size, n_embd=64, n_head=8, n_layer=16, block_size=block)
    opt, data = ref.make_optimizer(model), torch.as_tensor(train.astype("int64"))
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        ref.train_step(model, opt, data, batch_size=64, block_size=block)
        steps += 1
    with torch.no_grad():
        model.eval()
        val_loss = full_split_loss(model, val, block)
    wall = time.perf_counter() - start
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "seed": seed,
        "val_loss": round(val_loss, 4),
        "best_val_loss": round(val_loss, 4),
        "steps": steps,
        "wall_s": round(wall, 3),
        "stop_reason": f"{seconds:g} s spent",
        "parameters": parameters,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", type=Path, help="a recipe TOML, or `reference` for the blog-style loop")
    p.add_argument("--seconds", type=float, default=60.0, help="reference only: its time budget")
    p.add_argument("--seeds", type=int, default=3, help="seeds 1337, 1338, ...")
    p.add_argument("--corpus", type=Path, default=shared_data("bdunagan.com.txt"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change one recipe setting")
    p.add_argument("--label", default="", help="a name for this row (default: the recipe's file name)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "records.jsonl")
    args = p.parse_args()
    need(args.corpus)
    before = machine()
    with tempfile.TemporaryDirectory(prefix="bricklm-records-") as tmp:
        corpus = prepare_tail(args.corpus, Path(tmp) / "corpus")
        runs = []
        for seed in range(1337, 1337 + args.seeds):
            if str(args.recipe) == "reference":
                runs.append(reference_run(corpus, args.seconds, seed))
            else:
                runs.append(one_run(args.recipe, corpus, Path(tmp) / f"run-{seed}", seed, args.set))
            print(json.dumps(runs[-1]), flush=True)
    vals = [r["val_loss"] for r in runs if "val_loss" in r]
    row = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "label": args.label or args.recipe.stem,
        "seconds": args.seconds if str(args.recipe) == "reference" else None,
        "recipe": str(args.recipe),
        "set": args.set,
        "corpus": args.corpus.name,
        "machine": before,
        "load_avg_after": list(machine()["load_avg"]),
        "runs": runs,
        "val_mean": round(statistics.mean(vals), 4) if vals else None,
        "val_std": round(statistics.stdev(vals), 4) if len(vals) > 1 else None,
        "val_min": min(vals, default=None),
        "val_max": max(vals, default=None),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    spread = f" ± {row['val_std']}" if row["val_std"] is not None else ""
    print(
        f"{row['label']}: whole-split val {row['val_mean']}{spread} over {len(vals)} seeds "
        f"(load {before['load_avg'][0]} -> {row['load_avg_after'][0]})"
    )


if __name__ == "__main__":
    main()
