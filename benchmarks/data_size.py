"""How much writing is enough: val loss reached by model size × corpus size, with the default recipe's settings.

    nice -n 19 python benchmarks/data_size.py                   # writes benchmarks/results/data_size.json
    python benchmarks/data_size.py --steps 300 --early-stop 0 --fractions 0.25,1 --models 2x64,4x128
    python benchmarks/data_size.py --models 6x192 --fractions 1 --corpora builtin:python-docs --out part.json
    python benchmarks/data_size.py --merge part.json            # adds part.json's new cells to the results
    python benchmarks/data_size.py --table                      # docs/inside.md's table and datasize.py's rows

For each corpus (the blog's text and tiny Shakespeare from ../shared/data, when present, and the
built-in corpus, `builtin:python-docs`), `prepare` with the blog's tail split once; each fraction then
trains on the first part of that training split (so a quarter of the blog is its oldest posts) and is
scored on the same held-out tail with the same vocabulary, so the losses compare across fractions.
Then, for each model shape (n_layer x n_embd, 4 heads), train with every other setting at its default
(batch 32, block 128, AdamW with warm-up and cosine decay over --steps) and an evaluation every
--eval-interval steps, stopping early once val loss has not improved for --early-stop evaluations: each
run is trained to its best val loss (or to --steps, when it is still improving there: `still_improving`
says so), val loss over the whole held-out split (eval_full), one thread per run (--threads).
Recorded per run: parameters, training tokens and bytes, tokens per parameter, passes over the training
text, the best val loss and its step, the last train and val loss and their gap, wall and CPU seconds.
A run that keeps lowering train loss while its val loss has turned up is memorising. The machine and
its load average before and after are recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bricklm.config import ModelConfig, PrepareConfig, TrainConfig
from bricklm.files import sha256_file
from bricklm.storage.metrics import read_metrics
from bricklm.text.data import load_tokens, split_bytes, write_tokens
from bricklm.text.prepare import prepare
from bricklm.text.tokenizer import load_tokenizer
from bricklm.training.trainer import Trainer
from common import REPO, machine, shared_data


def quiet(*args, **kwargs) -> None:
    pass


def subset(corpus: Path, fraction: float, out: Path) -> Path:
    """A corpus folder that trains on the first `fraction` of corpus's training tokens and keeps its val split,
    tokenizer and text: the val loss of every fraction is measured on the same held-out text."""
    if fraction >= 1:
        return corpus
    out.mkdir()
    for name in ("corpus.txt", "tokenizer.json", "val.bin"):
        shutil.copyfile(corpus / name, out / name)
    meta = json.loads((corpus / "meta.json").read_text())
    train = load_tokens(corpus / "train.bin")[: int(meta["train_tokens"] * fraction)]
    write_tokens(out / "train.bin", train, meta["vocab_size"])
    meta["train_tokens"] = len(train)
    meta["train_bytes"] = split_bytes(train, load_tokenizer(corpus / "tokenizer.json"))
    meta["sha256"]["train.bin"] = sha256_file(out / "train.bin")
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def source_text(name: str, tmp: Path) -> Path | None:
    """A corpus as one text file: a file in ../shared/data, or builtin:NAME as `prepare` writes it."""
    if name.startswith("builtin:"):
        prepare([], tmp / "builtin", PrepareConfig(), builtin=name.split(":", 1)[1], log=quiet)
        return (tmp / "builtin" / "corpus.txt").rename(tmp / f"{name.split(':', 1)[1]}.txt")
    src = shared_data(name)
    return src if src.exists() else None


def one_run(corpus: Path, shape: str, args, run_dir: Path) -> dict:
    n_layer, n_embd = (int(x) for x in shape.split("x"))
    # sdpa in float32 pinned: the rows measured before the defaults became auto used them, and a probe per run
    # (timed while the other runs train) would pick by noise
    model_cfg = ModelConfig(n_layer=n_layer, n_embd=n_embd, n_head=4, attention="sdpa")
    train_cfg = TrainConfig(
        max_iters=args.steps,
        eval_interval=args.eval_interval,
        early_stop=args.early_stop,
        eval_full=True,  # val loss over the whole held-out split: a best of noisy estimates would flatter
        eval_iters=10,  # the train loss is still an estimate (the gap column)
        threads=args.threads,
        dtype="float32",
        sample_chars=0,
        device="cpu",
        copy_index=False,
        loss_levels="",
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = Trainer(model_cfg, train_cfg, corpus, run_dir, log=quiet, progress=False).run()
    evals = [m for m in read_metrics(run_dir) if m.get("eval")]
    meta = json.loads((corpus / "meta.json").read_text())
    last = evals[-1]
    tokens = last["step"] * train_cfg.batch_size * model_cfg.block_size
    return {
        "shape": shape,
        "parameters": result["parameters"],
        "train_tokens": meta["train_tokens"],
        "tokens_per_parameter": round(meta["train_tokens"] / result["parameters"], 3),
        "passes": round(tokens / meta["train_tokens"], 2),
        "best_val_loss": round(result["best_val_loss"], 4),
        "best_step": result["best_step"],
        "steps_run": last["step"],
        "still_improving": result["best_step"] == last["step"],
        "last_train_loss": round(last["train_loss"], 4),
        "last_val_loss": round(last["val_loss"], 4),
        "gap": round(last["val_loss"] - last["train_loss"], 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
    }


RUN_FLAGS = ("steps", "eval_interval", "early_stop", "threads", "fractions", "models", "corpora")
# each corpus's name in the table and in the nearest-run message (MEASURED)
NAMES = {
    "bdunagan.com.txt": ("the blog", "the blog"),
    "tinyshakespeare.txt": ("tiny Shakespeare", "tiny Shakespeare"),
    "builtin:python-docs": ("built-in (Python docs)", "the built-in corpus"),
}
PARTS = {
    0.0625: ("first 1/16", "'s first sixteenth"),
    0.25: ("first 1/4", "'s first quarter"),
    0.5: ("first 1/2", "'s first half"),
    1.0: ("whole", ""),
}


def cell(run: dict) -> tuple:
    """What a run measured: one text's part with one model shape."""
    return run["corpus"], run["fraction"], run["shape"]


def passes_at_best(run: dict) -> float:
    """Passes over the training text by the run's best step, at one_run's tokens per step (the defaults)."""
    return run["best_step"] * TrainConfig().batch_size * ModelConfig().block_size / run["train_tokens"]


def merge(results: Path, parts: list[Path]) -> None:
    """Add the runs of other invocations (--out part.json) to the results, each cell (corpus, part, shape) once:
    a cell measured already keeps its first run, so merging twice changes nothing."""
    merged = json.loads(results.read_text())
    have = {cell(r) for r in merged["runs"]}
    for part in parts:
        new = json.loads(part.read_text())
        added = [r for r in new["runs"] if cell(r) not in have]
        have |= {cell(r) for r in added}
        merged["runs"] += added
        if added and new["command"] not in merged["commands"]:
            merged["commands"].append(new["command"])
        print(f"{part}: {len(added)} new of {len(new['runs'])} runs")
    results.write_text(json.dumps(merged, indent=2) + "\n")


def table(results: Path) -> None:
    """docs/inside.md's table and training/datasize.py's MEASURED rows, from the results: pasted, since the
    installed package cannot read benchmarks/ and the docs are written by hand around the table."""
    data = json.loads(results.read_text())
    order = list(NAMES) + sorted({r["corpus"] for r in data["runs"]} - set(NAMES))
    rows = sorted(data["runs"], key=lambda r: (order.index(r["corpus"]), r["shape"], r["fraction"]))
    shown = {name: NAMES.get(name, (name, name)) for name in order}
    print("| corpus | training part | training tokens | model | parameters | tokens per parameter |", end="")
    print(" best val loss (step) | passes at the best | stopped at | last train / val | gap |")
    print("|---|---|---:|---|---:|---:|---|---:|---:|---|---:|")
    for r in rows:
        still = " (still improving)" if r["still_improving"] else ""
        print(
            f"| {shown[r['corpus']][0]} | {PARTS[r['fraction']][0]} | {r['train_tokens']:,} | "
            f"{r['shape'].replace('x', ' × ')} | {r['parameters']:,} | {r['tokens_per_parameter']} | "
            f"{r['best_val_loss']:.3f} ({r['best_step']}){still} | {passes_at_best(r):.0f} | {r['steps_run']} | "
            f"{r['last_train_loss']:.3f} / {r['last_val_loss']:.3f} | {r['gap']:+.3f} |"
        )
    print(f"\n{len(rows)} runs, {sum(r['cpu_seconds'] for r in rows) / 3600:.1f} CPU-hours\n")
    for r in rows:
        text = shown[r["corpus"]][1] + PARTS[r["fraction"]][1]
        print(
            f'    Measured("{text}", {r["train_tokens"]}, {r["parameters"]}, {r["best_val_loss"]}, '
            f"{passes_at_best(r):.1f}, {r['still_improving']}),"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500, help="the most steps (and the schedule's length)")
    p.add_argument("--eval-interval", type=int, default=100)
    p.add_argument("--early-stop", type=int, default=3, help="evaluations without a new best val loss (0: off)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fractions", default="0.0625,0.25,1", help="parts of each corpus, comma-separated")
    p.add_argument("--models", default="2x64,4x128,6x192", help="n_layer x n_embd shapes, comma-separated")
    p.add_argument(
        "--corpora",
        default="bdunagan.com.txt,tinyshakespeare.txt,builtin:python-docs",
        help="files in ../shared/data, or builtin:NAME",
    )
    p.add_argument("--out", default=str(REPO / "benchmarks/results/data_size.json"))
    p.add_argument("--merge", nargs="+", type=Path, metavar="PART", help="add these results' new runs to --out")
    p.add_argument("--table", action="store_true", help="print --out as docs/inside.md's table and MEASURED rows")
    args = p.parse_args()
    if args.merge or args.table:
        if args.merge:
            merge(Path(args.out), args.merge)
        if args.table:
            table(Path(args.out))
        return
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in RUN_FLAGS)
    record = {"command": f"python benchmarks/data_size.py {flags}", "machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bricklm-datasize-") as tmp:
        tmp = Path(tmp)
        corpora = []  # (name, fraction, training bytes, corpus dir), every one prepared before any training
        for name in args.corpora.split(","):
            src = source_text(name, tmp)
            if src is None:
                print(f"skipped {name}: not in ../shared/data")
                continue
            whole = tmp / f"corpus-{src.name}"
            prepare([src], whole, PrepareConfig(split="tail"), log=quiet)
            for fraction in (float(f) for f in args.fractions.split(",")):
                corpus = subset(whole, fraction, tmp / f"corpus-{src.name}-{fraction}")
                train_bytes = json.loads((corpus / "meta.json").read_text())["train_bytes"]
                corpora.append((name, fraction, train_bytes, corpus))
        # The small shapes over every corpus first, so a run stopped part-way has whole columns.
        for shape in args.models.split(","):
            for name, fraction, train_bytes, corpus in corpora:
                row = {"corpus": name, "fraction": fraction, "train_bytes": train_bytes}
                row |= one_run(corpus, shape, args, tmp / f"run-{corpus.name}-{shape}")
                record["runs"].append(row)
                print(json.dumps(row), flush=True)
                record["load_average_after"] = machine()["load_avg"]
                Path(args.out).write_text(json.dumps(record, indent=2) + "\n")  # kept after every run


if __name__ == "__main__":
    main()
