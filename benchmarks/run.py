"""bricklm against the blog's plain loop (benchmarks/reference_seed.py), measured side by side.

    python benchmarks/run.py                    # everything, levers included: ~25 min on 2 quiet cores
    python benchmarks/run.py --quick            # a smoke run: few steps, short generation, no time-to-loss
    python benchmarks/run.py --parts peak,train --models 800k --no-levers
    python benchmarks/run.py --parts ttl --recipe configs/speedrun-cpu.toml

Parts: peak (matmul GFLOP/s, fp32 and bf16), train (tokens/s, s/iteration, achieved GFLOP/s and
peak RSS for the blog's 800k and 10M models, bricklm against the reference), gen (500 new tokens
from the 10M model: KV cache, no cache, the reference's recompute loop), ttl (time to loss: a
recipe trained to its target on the blog's corpus, validation on the whole held-out split).

Every training and generation configuration runs in a fresh subprocess, so peak RSS is its own
and one configuration's allocator state can't help or hurt the next. Timings are wall clock
after warm-up steps (start-up, model building and compilation excluded); CPU time is recorded
beside them because on a shared machine it is the steadier figure. The machine (CPU model, cores,
torch version, load average before and after) is recorded with the numbers. Results go to
benchmarks/results/bench-<device>.json and docs/performance.md is regenerated from them.
On a machine without CUDA, `--device cuda` says so and measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import REPO, machine, shared_data  # noqa: E402  (benchmarks/ is not a package)

# The blog's two models (NOTES.md): name -> (n_layer, n_embd, n_head, batch, block)
MODELS = {"800k": (16, 64, 8, 64, 128), "10M": (52, 128, 4, 32, 128)}
VOCAB = 107  # the blog corpus's character vocabulary
THREADS = os.cpu_count()  # set from --threads; passed to every worker


# --- the machine ----------------------------------------------------------------------------


def matmul_peak(device: str, quick: bool) -> dict:
    """Best GFLOP/s of a square matmul, fp32 and bf16 (the ceiling the training figures are read against)."""
    import torch

    n = 4096 if device == "cuda" else 1024
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        best = float("inf")
        reps = 3 if quick else 10
        for i in range(reps + 2):
            sync(device)
            t = time.perf_counter()
            (a @ b).sum().item() if device != "cuda" else a @ b
            sync(device)
            elapsed = time.perf_counter() - t
            if i >= 2 or elapsed > 2.0:  # warm-up first, unless one product is already slow (emulated bf16)
                best = min(best, elapsed)
            if elapsed > 2.0:
                break
        out[name] = round(2 * n**3 / best / 1e9, 1)
    out["size"] = n
    return out


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def flops_per_token(n_layer: int, n_embd: int, block: int, n_params_nonemb: int) -> float:
    """Training FLOPs per token: 6 per weight (forward + backward) plus the attention matmuls (PaLM appendix B)."""
    return 6 * n_params_nonemb + 12 * n_layer * n_embd * block


# --- workers (each runs in its own process) ---------------------------------------------------


def worker_train(args) -> dict:
    import torch

    from bricklm.text.data import get_batch

    L, C, H, B, T = MODELS[args.model]
    torch.manual_seed(0)
    device = torch.device(args.device)
    data = torch.randint(0, VOCAB, (300_000,), dtype=torch.int64)
    if args.impl == "reference":
        import reference_seed as ref

        model = ref.ReferenceGPT(VOCAB, C, H, L, T).to(device)
        opt = ref.make_optimizer(model)
        data = data.to(device)

        def step():
            return ref.train_step(model, opt, data, B, T)

        nonemb = sum(p.numel() for n, p in model.named_parameters() if "embedding" not in n)
    else:
        model, opt, step = bricklm_step(args, L, C, H, B, T, device, data.numpy().astype("uint16"), get_batch)
        nonemb = sum(p.numel() for n, p in model.named_parameters() if "emb" not in n)
    for _ in range(args.warmup):
        step()
    sync(args.device)
    t, c = time.perf_counter(), time.process_time()
    losses = [step() for _ in range(args.steps)]
    sync(args.device)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    s_it = wall / args.steps
    fpt = flops_per_token(L, C, T, nonemb)
    return {
        "s_per_iter": s_it,
        "cpu_s_per_iter": cpu / args.steps,
        "tokens_per_s": B * T / s_it,
        "gflops": fpt * B * T / s_it / 1e9,
        "peak_rss_mb": peak_rss_mb(),
        "last_loss": losses[-1],
        "params": sum(p.numel() for p in model.parameters()),
    }


def bricklm_step(args, L, C, H, B, T, device, tokens, get_batch):
    """bricklm's own training step (train.train_step, what the Trainer runs) with the chosen switches."""
    import contextlib

    import torch

    from bricklm.config import ModelConfig, TrainConfig
    from bricklm.model.fastpaths import compile_with_fallback
    from bricklm.model.gpt import GPT
    from bricklm.training.optim import make_optimizer
    from bricklm.training.trainer import train_step
    from bricklm.training.tuning import apply_kernel, tune

    cfg = ModelConfig(
        vocab_size=VOCAB,
        block_size=T,
        n_layer=L,
        n_head=H,
        n_embd=C,
        activation="relu",
        attention=args.attention,
        bias=False,
        dropout=0.0,
    )
    tcfg = TrainConfig(
        batch_size=B,
        adamw=args.adamw,
        grad_clip=0.0,
        weight_decay=0.0,
        learning_rate=1e-3,
        schedule="constant",
        dtype=args.dtype,
    )
    model = GPT(cfg).to(device)
    model.set_recompute(args.recompute, tcfg.recompute_attention)
    tuning = tune(cfg, tcfg, device, log=lambda m: print(m, file=sys.stderr))  # attention/dtype auto: measured
    apply_kernel(model, tuning)
    opt = make_optimizer(model, tcfg, device)
    forward = compile_with_fallback(model, log=lambda m: print(m, file=sys.stderr)) if args.compile else model
    gen = torch.Generator().manual_seed(0)
    bf16 = tuning.dtype == "bfloat16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        loss, _ = train_step(
            model, opt, lambda: get_batch(tokens, B, T, gen, device), tcfg, 0, forward=forward, autocast=autocast
        )
        return loss

    return model, opt, step


def worker_gen(args) -> dict:
    import torch

    L, C, H, _, T = MODELS["10M"]
    torch.manual_seed(0)
    idx = torch.zeros((1, 1), dtype=torch.long, device=args.device)
    if args.impl == "reference":
        import reference_seed as ref

        model = ref.ReferenceGPT(VOCAB, C, H, L, T).to(args.device)

        def run(n):
            ref.generate_recompute(model, idx, n)
    else:
        from bricklm.config import ModelConfig
        from bricklm.model.generate import generate
        from bricklm.model.gpt import GPT

        cfg = ModelConfig(vocab_size=VOCAB, block_size=T, n_layer=L, n_head=H, n_embd=C, activation="relu")
        model = GPT(cfg).to(args.device)
        # kv-cache: the fused decode step; kv-cache-compiled: the same, torch.compile'd; -modules: the modules' forward
        use_cache, fast = args.impl != "no-cache", args.impl in ("kv-cache", "kv-cache-compiled")
        compiled = args.impl == "kv-cache-compiled"

        def run(n):
            g = torch.Generator(device=args.device).manual_seed(0)
            for _ in generate(model, idx, n, generator=g, use_cache=use_cache, fast=fast, compiled=compiled):
                pass

    t = time.perf_counter()
    run(5)  # warm-up (and, compiled, the compile: reported on its own)
    sync(args.device)
    warmup = time.perf_counter() - t
    t = time.perf_counter()
    run(args.tokens)
    sync(args.device)
    wall = time.perf_counter() - t
    return {
        "tokens": args.tokens,
        "seconds": wall,
        "tokens_per_s": args.tokens / wall,
        "warmup_s": warmup,
        "peak_rss_mb": peak_rss_mb(),
    }


def worker_ttl(args) -> dict:
    """Train a recipe on the blog's corpus until its target or budget; report wall time to each evaluation."""
    from bricklm.config import PrepareConfig
    from bricklm.recipes import load_config
    from bricklm.text.prepare import prepare
    from bricklm.training.trainer import Trainer

    work = Path(tempfile.mkdtemp(prefix="bricklm-ttl-"))
    prepare([args.corpus], work / "corpus", PrepareConfig(split="tail"), log=lambda *a, **k: None)
    overrides = {"device": args.device, "sample_chars": 0}
    model_cfg, train_cfg = load_config(REPO / args.recipe, overrides)
    trainer = Trainer(model_cfg, train_cfg, work / "corpus", work / "run", log=lambda *a, **k: None, progress=False)
    summary = trainer.run()
    evals = trainer.state.extra.get("wall_at_eval", [])
    hit = next((e for e in evals if train_cfg.target_val_loss and e[2] <= train_cfg.target_val_loss), None)
    return {
        "recipe": args.recipe,
        "target_val_loss": train_cfg.target_val_loss or None,
        "max_seconds": train_cfg.max_seconds or None,
        "evals": [{"step": s, "wall_s": w, "val_loss": v} for s, w, v in evals],
        "reached": hit is not None,
        "seconds_to_target": hit[1] if hit else None,
        "best_val_loss": summary["best_val_loss"],
        "steps": summary["steps"],
        "stop_reason": summary["stop_reason"],
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- the driver ------------------------------------------------------------------------------


def spawn(worker: str, *flags: str, timeout: int = 3600) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, "--threads", str(THREADS), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bricklm_variants(device: str, levers: bool, info: dict, recompute: bool = False) -> list[tuple[str, dict]]:
    """bricklm's fastest settings for this device, and (with --levers) one lever changed at a time.

    The attention kernel and the dtype are `auto`: measured for the shape on this machine (training/tuning.py).
    """
    fast = {
        "attention": "auto",
        "adamw": "auto",
        "dtype": "auto",
        "compile": device == "cuda",  # on CPU compile measured slower for these small shapes
    }
    out = [("bricklm", fast)]
    if recompute:
        out.append(("bricklm recompute_activations", {**fast, "recompute": True}))
    if levers:
        out += [
            ("bricklm sdpa attention", {**fast, "attention": "sdpa"}),
            ("bricklm manual attention", {**fast, "attention": "manual"}),
            ("bricklm plain AdamW", {**fast, "adamw": "plain"}),
            ("bricklm fused AdamW", {**fast, "adamw": "fused"}),
            ("bricklm fp32", {**fast, "dtype": "float32"}),
            ("bricklm bf16", {**fast, "dtype": "bfloat16"}),
            ("bricklm compile" if not fast["compile"] else "bricklm eager", {**fast, "compile": not fast["compile"]}),
        ]
    return out


def variant_flags(v: dict) -> list[str]:
    flags = ["--attention", v["attention"], "--adamw", v["adamw"], "--dtype", v["dtype"]]
    return flags + (["--compile"] if v["compile"] else []) + (["--recompute"] if v.get("recompute") else [])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", default="peak,train,gen,ttl", help="comma list of peak,train,gen,ttl")
    p.add_argument("--models", default="800k,10M", help="comma list of 800k,10M")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--quick", action="store_true", help="few steps and tokens, no time-to-loss: a smoke run")
    p.add_argument(
        "--levers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time each lever switched alone (first model only; default on, off with --quick)",
    )
    p.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 20, quick 3)")
    p.add_argument("--recipe", action="append", default=None, help="time-to-loss recipes (default: both in configs/)")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/bench-<device>.json)")
    p.add_argument(
        "--corpus",
        type=Path,
        default=shared_data("bdunagan.com.txt"),
        help="text for the time-to-loss part (default: ../shared/data/bdunagan.com.txt beside the repository)",
    )
    p.add_argument("--no-docs", action="store_true", help="don't regenerate docs/performance.md")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="PyTorch threads in every configuration, reference included (default: all cores; OMP_NUM_THREADS "
        "is overridden so a shell setting can't make the comparison unfair)",
    )
    # worker flags (internal)
    p.add_argument("--worker", choices=("train", "gen", "ttl"), help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=int, default=500, help=argparse.SUPPRESS)
    p.add_argument("--attention", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--adamw", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--recompute", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        fn = {"train": worker_train, "gen": worker_gen, "ttl": worker_ttl}[args.worker]
        if args.worker == "ttl":
            args.recipe = args.recipe[0]
        print(json.dumps(fn(args)))
        return 0

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench: no CUDA device on this machine; nothing measured (run with --device cpu)", file=sys.stderr)
        return 1
    global THREADS
    THREADS = args.threads
    parts = set(args.parts.split(","))
    if args.quick:
        args.levers = False
    steps = args.steps or (3 if args.quick else 20)
    warmup = "1" if args.quick else "3"
    torch.set_num_threads(args.threads)  # the matmul peak too
    info = machine()
    results: dict = {
        "machine": info,
        "device": args.device,
        "quick": args.quick,
        "threads": args.threads,
        "started": time.ctime(),
    }
    log = lambda m: print(m, flush=True)  # noqa: E731
    if "peak" in parts:
        results["matmul_peak_gflops"] = matmul_peak(args.device, args.quick)
        log(f"matmul peak: {results['matmul_peak_gflops']}")
    if "train" in parts:
        results["train"] = {}
        models = args.models.split(",")
        for name in models:
            rows = {}
            # The levers one at a time on the first model only (on the 10M model they take an hour);
            # the 10M model also with recompute_activations, for the memory target.
            variants = bricklm_variants(args.device, args.levers and name == models[0], info, name == "10M")
            for label, flags in [("reference", [])] + [(lbl, variant_flags(v)) for lbl, v in variants]:
                impl = "reference" if label == "reference" else "bricklm"
                r = spawn(
                    "train",
                    "--impl",
                    impl,
                    "--model",
                    name,
                    "--device",
                    args.device,
                    "--steps",
                    str(steps),
                    "--warmup",
                    warmup,
                    *flags,
                )
                r["settings"] = " ".join(flags) or "nn.MultiheadAttention, AdamW defaults, fp32, eager"
                rows[label] = r
                log(f"train {name} {label}: {fmt_row(r)}")
            ref = rows["reference"].get("tokens_per_s")
            for r in rows.values():
                if ref and "tokens_per_s" in r:
                    r["ratio"] = r["tokens_per_s"] / ref
            results["train"][name] = rows
    if "gen" in parts:
        n = "50" if args.quick else "500"
        results["gen"] = {}
        for impl in ("reference", "kv-cache", "kv-cache-compiled", "kv-cache-modules", "no-cache"):
            r = spawn("gen", "--impl", impl, "--device", args.device, "--tokens", n)
            results["gen"][impl] = r
            log(f"generate 10M {impl}: {r}")
        ref = results["gen"]["reference"].get("tokens_per_s")
        for r in results["gen"].values():
            if ref and "tokens_per_s" in r:
                r["ratio"] = r["tokens_per_s"] / ref
    if "ttl" in parts and not args.quick:
        if not args.corpus.is_file():
            log(f"time to loss: {args.corpus} not found (--corpus PATH); skipped")
        else:
            results["ttl"] = {}
            for recipe in args.recipe or ["configs/speedrun-cpu.toml", "configs/best-10min-cpu.toml"]:
                r = spawn("ttl", "--recipe", recipe, "--device", args.device, "--corpus", str(args.corpus))
                results["ttl"][recipe] = r
                log(f"time to loss {recipe}: {r}")
    info["load_avg_after"] = os.getloadavg()
    out = Path(args.out or ROOT / "results" / f"bench-{args.device}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    if not args.no_docs and not args.quick:
        from perf_doc import write_doc

        write_doc(out, REPO / "docs" / "performance.md")
        log(f"wrote {REPO / 'docs' / 'performance.md'}")
    return 0


def fmt_row(r: dict) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    return (
        f"{r['tokens_per_s']:,.0f} tok/s, {r['s_per_iter']:.3f} s/it (cpu {r['cpu_s_per_iter']:.3f}), "
        f"{r['gflops']:.1f} GFLOP/s, RSS {r['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    sys.exit(main())
