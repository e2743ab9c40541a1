"""`bricklm memorization`: how much of what a run generates is copied from its training text, beside held-out
text of the same length, and how that grows as the run overfits.

    result = memorization("runs/blog", samples=8, max_new_tokens=500)   # writes RUN/memorization.json and .png
    print(format_memorization(result))

The samples start from a newline (token 0 where the vocabulary has none), like training's own samples. The
same measure on windows of the held-out split, of the samples' lengths, is what "not copying" looks like
for this corpus: the words and phrases any text shares with it. Over training: the same samples (same
seeds) from each loss-level snapshot and from the best and last checkpoints, in step order.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from bricklm.errors import UserError
from bricklm.files import atomic_write_json
from bricklm.model.generate import check_sampling_settings, generate
from bricklm.storage.copying import run_index
from bricklm.storage.plots import plt, save
from bricklm.storage.runs import load_run
from bricklm.storage.snapshots import list_snapshots, load_snapshot_model
from bricklm.text.copyindex import MIN_SPAN, CopyIndex
from bricklm.text.tokenizer import can_encode

RESULT, PLOT = "memorization.json", "memorization.png"


def generate_samples(model, tokenizer, count: int, max_new_tokens: int, temperature: float, seed: int) -> list[str]:
    """count samples of max_new_tokens tokens each, from a newline, drawn together (one batch) on the CPU."""
    start = tokenizer.encode("\n") if can_encode(tokenizer, "\n") else [0]
    idx = torch.tensor([start] * count, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    new = list(generate(model, idx, max_new_tokens, temperature=temperature, generator=gen))
    rows = torch.cat(new, dim=1) if new else torch.zeros((count, 0), dtype=torch.long)
    return [tokenizer.decode(row) for row in rows]


def measure_texts(index: CopyIndex, texts: list[str], min_span: int) -> dict[str, Any]:
    """The copying of each text and its distribution: longest_copied (the maximum), copied_share (the mean)."""
    each = [index.measure(t, min_span) for t in texts]
    longest = [c.longest for c in each] or [0]
    shares = [c.share for c in each] or [0.0]
    return {
        "longest_copied": max(longest),
        "longest_median": statistics.median(longest),
        "copied_share": statistics.fmean(shares),
        "share_max": max(shares),
        "texts": [
            {"characters": c.characters, "longest": c.longest, "share": c.share, "document": c.document}
            | {"offset": c.offset}
            for c in each
        ],
    }


def memorization(
    run_dir: str | Path,
    *,
    samples: int = 8,
    max_new_tokens: int = 500,
    checkpoint: str = "best",
    min_span: int = MIN_SPAN,
    temperature: float = 0.8,
    seed: int = 1337,
    log=print,
) -> dict[str, Any]:
    """Measure a run's copying; write RUN/memorization.json (the returned record) and RUN/memorization.png."""
    check_sampling_settings(max_new_tokens, temperature, None, least=1, seed=seed)
    if samples < 1 or min_span < 1:
        raise UserError(f"--samples and --min-span must be >= 1, got {samples} and {min_span}")
    run_dir = Path(run_dir)
    run = load_run(run_dir, checkpoint)
    index, why = run_index(run_dir, log=log)
    if index is None:
        raise UserError(f"cannot measure copying: {why}")
    with index:
        texts = generate_samples(run.model, run.tokenizer, samples, max_new_tokens, temperature, seed)
        heldout = [w for i, t in enumerate(texts) for w in index.heldout(len(t), 1, seed=seed + i)]
        result = {
            "run": str(run_dir),
            "checkpoint": run.checkpoint.name,
            "step": run.trainer.get("step"),
            "samples": samples,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "min_span": min_span,
            **measure_texts(index, texts, min_span),
            "heldout": measure_texts(index, heldout, min_span),
            "chance": index.info.get("chance"),
        }
        over = []
        for label, model, step, val_loss in weights_over_training(run_dir):
            texts = generate_samples(model, run.tokenizer, samples, max_new_tokens, temperature, seed)
            measured = measure_texts(index, texts, min_span)
            keep = ("longest_copied", "longest_median", "copied_share", "share_max")
            over.append({"weights": label, "step": step, "val_loss": val_loss} | {k: measured[k] for k in keep})
    result["over_training"] = over
    atomic_write_json(run_dir / RESULT, result)
    plot_memorization(result, run_dir / PLOT, f"copying from the training text: {run_dir.name}")
    return result


def weights_over_training(run_dir: Path):
    """(label, model, step, val loss) for each loss-level snapshot and the best and last checkpoints, in step
    order; weights of one step once (the best checkpoint is often the last, or a snapshot's step)."""
    found: dict[int, tuple] = {}
    for which in ("last", "best"):
        run = load_run(run_dir, which)
        val = run.trainer.get("train_state", {}).get("last_val")
        found[int(run.trainer.get("step", 0))] = (f"{which} checkpoint", val, lambda m=run.model: m)
    for snap in list_snapshots(run_dir):
        load = lambda s=snap: load_snapshot_model(run_dir, s)  # noqa: E731 - loaded only when its turn comes
        found.setdefault(snap["step"], (f"snapshot val < {snap['level']:g}", snap["val_loss"], load))
    for step in sorted(found):
        label, val, load = found[step]
        yield label, load(), step, val


def plot_memorization(result: dict[str, Any], path: Path, title: str) -> Path:
    """Share copied (top) and longest copied span (bottom) against step, the held-out text's as dashed lines."""
    over = result["over_training"]
    steps = [o["step"] for o in over]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    shares = [100 * o["copied_share"] for o in over]
    top.plot(steps, shares, "o-", color="tab:red", label="samples (mean)")
    top.axhline(100 * result["heldout"]["copied_share"], color="grey", linestyle="--", label="held-out text")
    for o, share in zip(over, shares, strict=True):
        if o["val_loss"] is not None:
            top.annotate(f"val {o['val_loss']:.2f}", (o["step"], share), fontsize=7)
    top.set_ylabel(f"% in copied spans of {result['min_span']}+")
    top.set_title(title.encode("utf-8", "backslashreplace").decode("utf-8"))
    bottom.plot(steps, [o["longest_copied"] for o in over], "o-", color="tab:red", label="samples (max)")
    bottom.plot(steps, [o["longest_median"] for o in over], "o:", color="tab:red", alpha=0.6, label="samples (median)")
    bottom.axhline(result["heldout"]["longest_copied"], color="grey", linestyle="--", label="held-out text (max)")
    bottom.set_ylabel("longest copied span (characters)")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)  # nothing copied is the floor, not an axis centred on it
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def format_memorization(result: dict[str, Any]) -> str:
    """What the command prints: the distribution beside held-out text, the chance length, and the run's course."""
    r, h, n = result, result["heldout"], result["min_span"]
    lines = [
        f"copying by {r['run']} ({r['checkpoint']}, step {r['step']:,}): {r['samples']} samples of "
        f"{r['max_new_tokens']} tokens, spans of {n}+ characters",
        "",
        "| text | longest copied (median) | longest copied (max) | share in copied spans (mean) | (max) |",
        "|---|---:|---:|---:|---:|",
        f"| the model's samples | {r['longest_median']:g} | {r['longest_copied']} | {r['copied_share']:.1%} | "
        f"{r['share_max']:.1%} |",
        f"| held-out text, same lengths | {h['longest_median']:g} | {h['longest_copied']} | {h['copied_share']:.1%} | "
        f"{h['share_max']:.1%} |",
    ]
    chance = r.get("chance") or {}
    if chance.get("chance_length") is not None:
        lines += [
            "",
            f"held-out text matches {chance['chance_length']} characters by chance in this corpus (95th percentile "
            f"of the longest match in {chance['windows']} held-out window{'s' * (chance['windows'] != 1)} of "
            f"{chance['window_chars']:,} characters; "
            f"median {chance['median']}, max {chance['max']})",
        ]
    lines += [
        "",
        "over training:",
        "",
        "| weights | step | val loss | longest copied (max) | share in copied spans (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for o in r["over_training"]:
        val = f"{o['val_loss']:.4f}" if o["val_loss"] is not None else "–"
        lines.append(f"| {o['weights']} | {o['step']:,} | {val} | {o['longest_copied']} | {o['copied_share']:.1%} |")
    return "\n".join(lines)
