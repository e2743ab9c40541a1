"""The figures behind docs/reliability.md: what a safe checkpoint costs, and how good the memory estimate is.

    python benchmarks/reliability.py            # prints the figures; a few minutes on a laptop CPU
    python benchmarks/reliability.py --json benchmarks/results/reliability.json

1. Checkpoint cost at the blog's headline size (10.3M parameters, configs/seed/headline-10m.toml):
   bytes on disk, seconds to save (temp dir, fsync of every file and folder, rename) and to load
   (read once, sha256 against the manifest, parse safetensors/JSON), median of a few repeats.
2. hardware.estimate_memory_bytes against the peak resident memory (Linux VmHWM, reset after the
   imports) of a fresh process that builds the model and optimiser and trains 2 steps on random
   tokens, for each attention path. check_fits refuses a model whose estimate exceeds the memory
   available, so the estimate should sit a little above the peak: a generous estimate refuses
   models that would fit; a low one lets a run swap.

Times depend on the machine and its load: quote the machine and `uptime` with them.
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

PEAK_CHILD = r"""
import sys, torch
from bricklm.config import ModelConfig, TrainConfig
from bricklm.model.gpt import GPT
from bricklm.training.optim import make_optimizer
def status(key):
    return next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith(key))
m = ModelConfig(**eval(sys.argv[1])); t = TrainConfig(batch_size=int(sys.argv[2]))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now: imports don't count
base = status("VmRSS:")
model = GPT(m); opt = make_optimizer(model, t, torch.device("cpu"))
for _ in range(2):
    x = torch.randint(m.vocab_size, (t.batch_size, m.block_size))
    _, loss = model(x, x); opt.zero_grad(); loss.backward(); opt.step()
print(status("VmHWM:") - base)
"""

# The blog's block (C=128, 4 heads, T=128, batch 32) at 8 layers rather than 52: memory per layer is
# what the estimate models, and 52 layers of manual attention take minutes on a laptop CPU.
BLOG8 = dict(vocab_size=107, n_layer=8, n_head=4, n_embd=128, block_size=128, dropout=0.1, activation="relu")
SHAPES = [  # (name, model fields, batch size)
    ("blog block x8, torch_mha (the blog's)", dict(BLOG8, attention="torch_mha"), 32),
    ("blog block x8, manual", dict(BLOG8, attention="manual"), 32),
    ("blog block x8, sdpa", dict(BLOG8, attention="sdpa"), 32),
    ("800k, sdpa", dict(vocab_size=107, n_layer=4, n_head=4, n_embd=128, block_size=128), 32),
    ("wide 25M, sdpa", dict(vocab_size=107, n_layer=8, n_head=8, n_embd=512, block_size=256), 16),
    (
        "long context, manual",
        dict(vocab_size=107, n_layer=2, n_head=8, n_embd=256, block_size=512, attention="manual"),
        8,
    ),
]


def checkpoint_cost(repeats: int = 3) -> dict:
    import torch

    from bricklm.config import ModelConfig, TrainConfig
    from bricklm.model.gpt import GPT
    from bricklm.recipes import load_config
    from bricklm.storage import checkpoint as ckpt
    from bricklm.training.optim import make_optimizer

    model_cfg, train_cfg = load_config(Path(__file__).parent.parent / "configs/seed/headline-10m.toml")
    model_cfg.vocab_size = 107
    model = GPT(model_cfg)
    opt = make_optimizer(model, train_cfg, torch.device("cpu"))
    x = torch.randint(107, (2, model_cfg.block_size))
    _, loss = model(x, x)
    loss.backward()
    opt.step()  # so the Adam moments exist and are saved
    config = {"model": vars(model_cfg), "train": vars(train_cfg)}
    tokenizer = {"type": "char", "chars": [chr(32 + i) for i in range(107)]}
    saves, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t0 = time.perf_counter()
            path = ckpt.save_checkpoint(tmp, i, model, opt, {"train_state": {}}, config, tokenizer, torch.Generator())
            saves.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ckpt.load_checkpoint(path)
            loads.append(time.perf_counter() - t0)
        sizes = {p.name: p.stat().st_size for p in path.iterdir()}
    assert isinstance(ModelConfig, type) and isinstance(TrainConfig, type)
    return {
        "parameters": model.n_params(),
        "bytes": sizes,
        "total_mb": sum(sizes.values()) / 1e6,
        "save_s": statistics.median(saves),
        "load_s": statistics.median(loads),
    }


def memory_estimates(show=print) -> list[dict]:
    from bricklm.config import ModelConfig, TrainConfig
    from bricklm.model.gpt import count_params
    from bricklm.training.hardware import estimate_memory_bytes

    show("| shape | parameters | batch | estimate (MB) | measured peak (MB) | estimate / peak |")
    show("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, fields, batch in SHAPES:
        est = estimate_memory_bytes(ModelConfig(**fields), TrainConfig(batch_size=batch))
        out = subprocess.run(
            [sys.executable, "-c", PEAK_CHILD, repr(fields), str(batch)], capture_output=True, text=True, check=True
        )
        peak = int(out.stdout.strip())
        r = {
            "shape": name,
            "parameters": count_params(ModelConfig(**fields)),
            "batch": batch,
            "estimate_mb": est / 1e6,
            "peak_mb": peak / 1e6,
            "ratio": est / peak,
        }
        show(
            f"| {r['shape']} | {r['parameters']:,} | {r['batch']} | {r['estimate_mb']:.0f} | "
            f"{r['peak_mb']:.0f} | {r['ratio']:.2f} |"
        )
        rows.append(r)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--memory-only", action="store_true", help="skip the checkpoint timing")
    args = parser.parse_args()
    cost = None
    if not args.memory_only:
        cost = checkpoint_cost()
        print(f"checkpoint of {cost['parameters']:,} parameters: {cost['total_mb']:.1f} MB on disk, ", end="")
        save_ms, load_ms = cost["save_s"] * 1000, cost["load_s"] * 1000
        print(f"save {save_ms:.0f} ms, load+verify {load_ms:.0f} ms (median of 3)\n", flush=True)
    mem = memory_estimates(lambda line: print(line, flush=True))
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": cost, "memory": mem}, indent=2) + "\n")


if __name__ == "__main__":
    main()
