"""How exact `bricklm export --format hf` is: transformers against bricklm, per switch combination.

    PYTHONPATH=src python benchmarks/export_hf.py [--iters 150] [--workdir /tmp/bricklm-export-bench]

Trains one small model per combination of the switches GPT-2's layout can hold (learned /
sinusoidal positions × GELU / ReLU × tied / untied × char / BPE; the attention kind and the
attention biases are varied across them) on the built-in corpus, exports each to a Hugging Face
folder, loads it with transformers and records, in benchmarks/results/export_hf.json:

  max_abs      largest |transformers logit − bricklm logit| over 8 held-out windows of block_size tokens
  logit_scale  largest |bricklm logit| there, for scale
  greedy_60    whether 60 greedy tokens after a prompt are the same ids
  same_ids     whether the exported tokenizer encodes 20,000 held-out characters to bricklm's ids

export_llamacpp.py reuses `prepare_corpora` and `train_run` for llama.cpp's side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import torch

from bricklm.config import PrepareConfig
from bricklm.export import export_run
from bricklm.storage.runs import load_run
from bricklm.text.prepare import prepare

ROOT = Path(__file__).resolve().parent.parent
MODEL = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "128", "--dropout", "0"]
COMBOS = list(itertools.product(("learned", "sinusoidal"), ("gelu", "relu"), ("tied", "untied"), ("char", "bpe")))


def prepare_corpora(workdir: Path) -> Path:
    """The built-in corpus, prepared twice: char and BPE (2,048 tokens)."""
    for kind in ("char", "bpe"):
        if not (workdir / kind / "meta.json").is_file():
            prepare(
                [],
                workdir / kind,
                PrepareConfig(tokenizer=kind, vocab_size=2048),
                builtin="python-docs",
                log=lambda *a: None,
            )
    return workdir


def train_run(workdir: Path, name: str, kind: str, flags: list[str], iters: int) -> Path:
    """A run trained in-process with bricklm's own Trainer (reused when it already exists)."""
    from bricklm.cli import main

    run = workdir / "runs" / name
    if not (run / "summary.json").is_file():
        common = [
            "--max-iters",
            str(iters),
            "--eval-interval",
            str(iters),
            "--eval-iters",
            "2",
            "--batch-size",
            "16",
            "--sample-chars",
            "0",
            "--device",
            "cpu",
            "--warmup-iters",
            "10",
        ]
        assert main(["train", "--data", str(workdir / kind), "--out", str(run), *MODEL, *common, *flags]) == 0
    return run


def held_out_text(workdir: Path, kind: str, chars: int = 20_000) -> str:
    text = (workdir / kind / "corpus.txt").read_text(encoding="utf-8")
    return text[-chars:]


def windows(ids: list[int], width: int, n: int = 8) -> torch.Tensor:
    step = (len(ids) - width) // n
    return torch.tensor([ids[i * step : i * step + width] for i in range(n)])


def greedy_bricklm(model, ids: list[int], n: int) -> list[int]:
    ids = list(ids)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
    return ids


def measure(run_dir: Path, out: Path, text: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export_run(run_dir, "best", "hf", out, overwrite=True)
    run = load_run(run_dir)
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    ids = run.tokenizer.encode(text)
    batch = windows(ids, run.model_cfg.block_size)
    with torch.no_grad():
        ours = run.model(batch)[0]
        theirs = model(batch).logits
    prompt = ids[:20]
    expected = greedy_bricklm(run.model, prompt, 60)
    with torch.no_grad():
        got = model.generate(torch.tensor([prompt]), max_new_tokens=60, do_sample=False)[0].tolist()
    return {
        "max_abs": float((theirs - ours).abs().max()),
        "logit_scale": float(ours.abs().max()),
        "greedy_60": got == expected,
        "same_ids": tok(text)["input_ids"] == ids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bricklm-export-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/export_hf.json")
    args = parser.parse_args()
    import transformers

    workdir = prepare_corpora(args.workdir)
    rows = []
    for i, (positional, activation, tie, kind) in enumerate(COMBOS):
        attention, bias = ("manual", "torch_mha", "sdpa")[i % 3], ("--bias", "--no-bias")[i // 2 % 2]
        flags = [
            "--positional",
            positional,
            "--activation",
            activation,
            "--attention",
            attention,
            bias,
            "--tie-weights" if tie == "tied" else "--no-tie-weights",
        ]
        name = f"{positional}-{activation}-{tie}-{kind}-{attention}{bias.replace('--', '-')}"
        t0 = time.perf_counter()
        run = train_run(workdir, name, kind, flags, args.iters)
        row = {"combination": name, **measure(run, workdir / "hf" / name, held_out_text(workdir, kind))}
        rows.append(row)
        took = time.perf_counter() - t0
        print(
            f"{name:48s} max_abs {row['max_abs']:.2e}  scale {row['logit_scale']:6.2f}  greedy_60 "
            f"{row['greedy_60']}  same_ids {row['same_ids']}  ({took:.0f} s)",
            flush=True,
        )
    result = {
        "command": f"PYTHONPATH=src python benchmarks/export_hf.py --iters {args.iters}",
        "model": " ".join(MODEL),
        "iters": args.iters,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "worst_max_abs": max(r["max_abs"] for r in rows),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"worst max_abs {result['worst_max_abs']:.2e}; all greedy agree: {all(r['greedy_60'] for r in rows)}; "
        f"all ids agree: {all(r['same_ids'] for r in rows)} -> {args.out}"
    )


if __name__ == "__main__":
    main()
