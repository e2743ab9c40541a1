"""How much writing is enough: val loss reached by model size × corpus size, with the default recipe's settings.

    nice -n 19 python benchmarks/data_size.py                   # writes benchmarks/results/data_size.json
    python benchmarks/data_size.py --steps 300 --fractions 0.25,1 --models 2x64,4x128,6x192

For each corpus (the blog's text and tiny Shakespeare from ../shared/data, when present) and each
fraction of it (its first part, so a quarter of the blog is its oldest posts), `prepare` with the blog's
tail split, then, for each model shape (n_layer x n_embd, 4 heads), train --steps steps with every
other setting at its default (batch 32, block 128, AdamW with warm-up and cosine decay) and an
evaluation every --eval-interval steps. Recorded per run: parameters, training tokens, tokens per
parameter, passes over the training text, the best val loss and its step, the last train and val loss
and their gap. A run that keeps lowering train loss while its val loss has turned up is memorising.
The machine and its load average before and after are recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bricklm.config import ModelConfig, PrepareConfig, TrainConfig
from bricklm.storage.metrics import read_metrics
from bricklm.text.prepare import prepare
from bricklm.training.trainer import Trainer
from common import REPO, machine, shared_data


def quiet(*args, **kwargs) -> None:
    pass


def subset(src: Path, fraction: float, out: Path) -> Path:
    """The first `fraction` of a text file, cut at a line end."""
    text = src.read_text(encoding="utf-8")
    cut = text.rfind("\n", 0, int(len(text) * fraction)) + 1 if fraction < 1 else len(text)
    out.write_text(text[:cut], encoding="utf-8")
    return out


def one_run(corpus: Path, shape: str, args, run_dir: Path) -> dict:
    n_layer, n_embd = (int(x) for x in shape.split("x"))
    model_cfg = ModelConfig(n_layer=n_layer, n_embd=n_embd, n_head=4)
    train_cfg = TrainConfig(
        max_iters=args.steps, eval_interval=args.eval_interval, sample_chars=0, device="cpu", copy_index=False
    )
    t0 = time.perf_counter()
    result = Trainer(model_cfg, train_cfg, corpus, run_dir, log=quiet, progress=False).run()
    evals = [m for m in read_metrics(run_dir) if m.get("eval")]
    meta = json.loads((corpus / "meta.json").read_text())
    tokens = args.steps * train_cfg.batch_size * model_cfg.block_size
    last = evals[-1]
    return {
        "shape": shape,
        "parameters": result["parameters"],
        "train_tokens": meta["train_tokens"],
        "tokens_per_parameter": round(meta["train_tokens"] / result["parameters"], 3),
        "passes": round(tokens / meta["train_tokens"], 2),
        "best_val_loss": round(result["best_val_loss"], 4),
        "best_step": result["best_step"],
        "last_train_loss": round(last["train_loss"], 4),
        "last_val_loss": round(last["val_loss"], 4),
        "gap": round(last["val_loss"] - last["train_loss"], 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-interval", type=int, default=50)
    p.add_argument("--fractions", default="0.25,1", help="parts of each corpus, comma-separated")
    p.add_argument("--models", default="2x64,4x128,6x192", help="n_layer x n_embd shapes, comma-separated")
    p.add_argument("--corpora", default="bdunagan.com.txt,tinyshakespeare.txt", help="files in ../shared/data")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/data_size.json"))
    args = p.parse_args()
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")
    record = {"command": f"python benchmarks/data_size.py {flags}", "machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bricklm-datasize-") as tmp:
        tmp = Path(tmp)
        for name in args.corpora.split(","):
            src = shared_data(name)
            if not src.exists():
                print(f"skipped {name}: not in ../shared/data")
                continue
            for fraction in (float(f) for f in args.fractions.split(",")):
                text = subset(src, fraction, tmp / f"{name}-{fraction}.txt")
                corpus = tmp / f"corpus-{name}-{fraction}"
                prepare([text], corpus, PrepareConfig(split="tail"), log=quiet)
                for shape in args.models.split(","):
                    row = {"corpus": name, "fraction": fraction, "characters": len(text.read_text(encoding="utf-8"))}
                    row |= one_run(corpus, shape, args, tmp / f"run-{name}-{fraction}-{shape}")
                    record["runs"].append(row)
                    print(json.dumps(row), flush=True)
    record["load_average_after"] = machine()["load_avg"]
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
