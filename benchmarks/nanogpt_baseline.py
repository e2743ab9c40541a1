"""nanoGPT's own CPU recipe against a bricklm recipe on tinyshakespeare, back to back on this machine.

    python benchmarks/nanogpt_baseline.py --nanogpt /tmp/nanogpt            # a copy of karpathy/nanoGPT
    python benchmarks/nanogpt_baseline.py --nanogpt /tmp/nanogpt --recipe configs/shakespeare-cpu.toml --seeds 3

1. nanoGPT: its data script on the same text (first 90% train, last 10% val), then its train.py with
   the CPU recipe from its README (`--device=cpu --compile=False --eval_iters=20 --log_interval=1
   --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
   --lr_decay_iters=2000 --dropout=0.0`), timed from its step-0 evaluation to the end. Its saved
   checkpoint (the best of its own evaluations) is then scored on the *whole* validation split, every
   target once, the same way bricklm's `eval_full` scores (datasets.full_split_loss).
2. bricklm: the recipe with that score as its target_val_loss, on the same text prepared with
   `--split tail` (the same split and the same character ids), once per seed; time to the target is
   the wall time from the first step to the evaluation that shows it, evaluations included.

nanoGPT's code is run where it lies (--nanogpt): nothing of it is copied here. Its checkpoint is a
file this script just made, read with torch.load(weights_only=True). Results go to
benchmarks/results/nanogpt-baseline.json with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, need, shared_data  # noqa: E402  (benchmarks/ is not a package)

NANOGPT_CPU = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
]


def run_nanogpt(nanogpt: Path, corpus: Path, work: Path) -> dict:
    """Prepare nanoGPT's data from corpus, train its CPU recipe, return its wall time and log."""
    copy = work / "nanogpt"
    shutil.copytree(nanogpt, copy, ignore=shutil.ignore_patterns(".git", "out-*"))
    data = copy / "data" / "shakespeare_char"
    shutil.copy(corpus, data / "input.txt")  # its prepare.py only downloads when input.txt is missing
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True)
    out = work / "nanogpt-out"
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_CPU, f"--out_dir={out}"]
    proc = subprocess.Popen(cmd, cwd=copy, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started, lines = None, []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if started is None and line.startswith("step 0:"):
            started = time.perf_counter()  # after its step-0 evaluation, as bricklm's clock starts
    proc.wait()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit("nanoGPT's train.py failed:\n" + "\n".join(lines[-20:]))
    evals = [ln for ln in lines if ln.startswith("step ")]
    return {
        "command": " ".join(cmd[1:]),
        "wall_s": round(wall, 2),
        "evals": evals,
        "checkpoint": str(out / "ckpt.pt"),
        "code": str(copy),
    }


def score_nanogpt(result: dict, val_tokens) -> float:
    """nanoGPT's saved model on the whole validation split (its forward returns every position's logits only
    when given targets, so the adapter passes the inputs as dummy targets and drops its loss)."""
    import torch

    from bricklm.training.datasets import full_split_loss

    sys.path.insert(0, result["code"])
    from model import GPT, GPTConfig  # nanoGPT's model.py, from the copy it ran

    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})

    class EveryPosition(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x, x)[0], None

    result["iter_num"] = ckpt["iter_num"]
    return full_split_loss(EveryPosition(model), val_tokens, ckpt["model_args"]["block_size"], batch_size=64)


def run_bricklm(recipe: Path, corpus_dir: Path, target: float, seed: int, work: Path) -> dict:
    from bricklm.recipes import load_config
    from bricklm.training.trainer import Trainer

    model_cfg, train_cfg = load_config(recipe, {"target_val_loss": target, "seed": seed, "device": "cpu"})
    trainer = Trainer(model_cfg, train_cfg, corpus_dir, work / f"bricklm-{seed}", log=lambda *a: None, progress=False)
    summary = trainer.run()
    evals = trainer.state.extra.get("wall_at_eval", [])
    hit = next((e for e in evals if e[2] <= target), None)
    return {
        "seed": seed,
        "reached": hit is not None,
        "seconds_to_target": hit[1] if hit else None,
        "step": hit[0] if hit else None,
        "best_val_loss": summary["best_val_loss"],
        "stop_reason": summary["stop_reason"],
        "evals": evals,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nanogpt", type=Path, required=True, help="a copy of karpathy/nanoGPT (never inside this repo)")
    p.add_argument("--corpus", type=Path, default=shared_data("tinyshakespeare.txt"))
    p.add_argument("--recipe", type=Path, default=REPO / "configs" / "shakespeare-cpu.toml")
    p.add_argument("--seeds", type=int, default=1, help="bricklm runs, seeds 1337, 1338, ...")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nanogpt-baseline.json")
    args = p.parse_args()
    need(args.corpus)
    from bricklm.config import PrepareConfig
    from bricklm.text.data import load_corpus
    from bricklm.text.prepare import prepare

    info = machine()
    with tempfile.TemporaryDirectory(prefix="bricklm-nanogpt-") as tmp:
        work = Path(tmp)
        nano = run_nanogpt(need(args.nanogpt), args.corpus, work)
        prepare([args.corpus], work / "corpus", PrepareConfig(split="tail"), log=lambda *a: None)
        _, val, _, _ = load_corpus(work / "corpus")
        nano["whole_split_val"] = round(score_nanogpt(nano, val), 4)
        print(f"nanoGPT: {nano['wall_s']} s, whole-split val {nano['whole_split_val']}", flush=True)
        runs = []
        for seed in range(1337, 1337 + args.seeds):
            runs.append(run_bricklm(args.recipe, work / "corpus", nano["whole_split_val"], seed, work))
            print(f"bricklm seed {seed}: {runs[-1]['seconds_to_target']} s to {nano['whole_split_val']}", flush=True)
    times = [r["seconds_to_target"] for r in runs if r["reached"]]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": info,
        "load_avg_after": list(machine()["load_avg"]),
        "corpus": args.corpus.name,
        "recipe": str(args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe),
        "nanogpt": {k: v for k, v in nano.items() if k not in ("checkpoint", "code")},
        "bricklm": runs,
        "bricklm_mean_s": round(statistics.mean(times), 2) if len(times) == len(runs) else None,
        "speedup": round(nano["wall_s"] / statistics.mean(times), 2) if len(times) == len(runs) else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("bricklm_mean_s", "speedup")}))


if __name__ == "__main__":
    main()
