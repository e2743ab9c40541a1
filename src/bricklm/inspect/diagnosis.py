"""Turn health records (health.py) into plain sentences: what looks wrong, what looks fine, and why.

    findings = diagnose(records)          # records: oldest first, as from probe_training or metrics.jsonl
    print(format_findings(findings))

Every threshold is in THRESHOLDS with the figure it applies to; docs/inside.md has the table and
the check on two corpora and two model sizes that they were set against (not only the tests' models).
A finding is "warning" when something is wrong with the set-up, "note" when it is worth knowing
but normal in some phases of training, "ok" when the check passed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

THRESHOLDS: dict[str, float] = {
    # passthrough = ⟨block(2x) − block(x), x⟩ / ‖x‖²: 1 with a residual (identity) path, ~0 without.
    "passthrough_min": 0.5,
    # embed_cos of the stream after a block without identity path: the bug keeps the stream's
    # direction (renormalised, cos ≳ 0.7); no residual at all leaves it uncorrelated (cos ≈ 0).
    "overwritten_cos_min": 0.3,
    # grad_norm(first block) / grad_norm(last block)
    "grad_vanish_ratio": 1e-2,
    "grad_explode_ratio": 1e2,
    # input_sensitivity: change of the first sub-layer's input when the block's input doubles,
    # relative: ≈ 1e-3 behind a LayerNorm (its epsilon), exactly 1 without one
    "sublayer_raw_input": 0.5,
    # act_std of the residual stream anywhere
    "stream_std_max": 20.0,
    # median over layers of ‖Δw‖/‖w‖, the largest seen in the records (the schedule's peak)
    "update_ratio_low": 1e-3,
    "update_ratio_high": 1e-1,
    # normalised attention entropy of a head: above = near-uniform (averaging), below... see collapse
    "head_uniform_entropy": 0.98,
    # mean weight on position 0 in the second half of rows: above = collapsed onto the first token
    "head_first_token": 0.9,
    # steps after which heads that are all still near-uniform are a warning, not a note
    "heads_learn_by_step": 1000,
}


@dataclass
class Finding:
    level: str  # "warning" | "note" | "ok"
    topic: str
    text: str


def _fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 0.01 or abs(x) >= 1000 else f"{x:.3g}"


def diagnose(records: list[dict[str, Any]], thresholds: dict[str, float] | None = None) -> list[Finding]:
    """Findings from a list of health records (the last one is 'now'; earlier ones give the history)."""
    if not records:
        return [Finding("note", "data", "no health records: train with --log-health or inspect with --steps N")]
    t = {**THRESHOLDS, **(thresholds or {})}
    last = records[-1]
    out = []
    out += _residual(last, t)
    out += _gradients(last, t)
    out += _stream_scale(last, t)
    out += _learning_rate(records, t)
    out += _heads(last, t)
    return out


def _residual(r, t) -> list[Finding]:
    passes = r.get("passthrough", [])
    if not passes:
        return []
    broken = [i for i, p in enumerate(passes) if p < t["passthrough_min"]]
    if not broken:
        return [
            Finding(
                "ok",
                "residual stream",
                f"every block passes its input through (doubling a block's input x moves its output along x by "
                f"{_fmt(min(passes))}–{_fmt(max(passes))} × x; a residual path gives ≈ 1)",
            )
        ]
    cos = [r["embed_cos"][i] for i in broken if i < len(r.get("embed_cos", []))]
    stds = [r["act_std"][i + 1] for i in broken]
    where = _blocks(broken, len(passes))
    detail = (
        f"doubling the input x of {where} moves the output along x by only {_fmt(max(passes[i] for i in broken))} "
        f"× x (< {t['passthrough_min']}; a residual path gives ≈ 1), so nothing carries the stream's size through"
    )
    if cos and statistics.median(cos) >= t["overwritten_cos_min"]:
        return [
            Finding(
                "warning",
                "residual stream",
                f"the residual stream is overwritten at each block: {detail}; it keeps its direction "
                f"(cosine with the embedding {_fmt(min(cos))}–{_fmt(max(cos))}) but its size is reset "
                f"(std after those blocks {_fmt(min(stds))}–{_fmt(max(stds))}), which is what a normalised copy "
                "replacing the stream looks like: the blog's `x = ln1(x)` bug (residual = 'bug'). "
                "Add the sub-layer's output to x instead of reassigning x.",
            )
        ]
    return [
        Finding(
            "warning",
            "residual stream",
            f"no residual connection: {detail}, and the stream after them is unrelated to the embedding "
            f"(cosine {_fmt(statistics.median(cos)) if cos else 'n/a'}). Each block's output replaces its input "
            "(residual = 'off'); deep stacks like this train badly.",
        )
    ]


def _blocks(idx: list[int], n: int) -> str:
    if len(idx) == n:
        return f"every block (0–{n - 1})" if n > 1 else "the block"
    if len(idx) == 1:
        return f"block {idx[0]}"
    return f"blocks {', '.join(map(str, idx))}"


def _gradients(r, t) -> list[Finding]:
    g = r.get("grad_norm", {})
    blocks = [g[k] for k in g if k.startswith("block")]
    if any(not math.isfinite(v) for v in g.values()):
        return [Finding("warning", "gradients", "some gradients are NaN or infinite: training has diverged")]
    if len(blocks) < 2 or blocks[-1] == 0:
        return []
    ratio = blocks[0] / blocks[-1]
    said = f"gradient norm of the first block / last block = {_fmt(ratio)}"
    if ratio < t["grad_vanish_ratio"]:
        return [
            Finding(
                "warning",
                "gradients",
                f"vanishing gradients toward the first layers: {said} (< {_fmt(t['grad_vanish_ratio'])}); "
                "the early blocks barely learn. Usually a missing residual path.",
            )
        ]
    if ratio > t["grad_explode_ratio"]:
        return [
            Finding(
                "warning",
                "gradients",
                f"exploding gradients toward the first layers: {said} (> {_fmt(t['grad_explode_ratio'])}).",
            )
        ]
    return [
        Finding(
            "ok",
            "gradients",
            f"gradients reach the first layers: {said} "
            f"(healthy between {_fmt(t['grad_vanish_ratio'])} and {_fmt(t['grad_explode_ratio'])})",
        )
    ]


def _stream_scale(r, t) -> list[Finding]:
    std = r.get("act_std", [])
    if len(std) < 2:
        return []
    out = []
    peak = max(std)
    if not math.isfinite(peak) or peak > t["stream_std_max"]:
        out.append(
            Finding(
                "warning",
                "activations",
                f"the residual stream is huge (std up to {_fmt(peak)}, > {_fmt(t['stream_std_max'])}): "
                "activations are exploding; a learning rate far too high, or normalisation missing.",
            )
        )
    after = std[1:]  # after each block
    growth = ""
    if len(after) >= 2 and after[0] > 0:
        per_block = (after[-1] / after[0]) ** (1 / (len(after) - 1))
        growth = (
            f"; the stream's std goes from {_fmt(after[0])} after the first block to {_fmt(after[-1])} after "
            f"the last (×{_fmt(per_block)} per block)"
        )
    sens = r.get("input_sensitivity", [])
    if sens:
        raw = [i for i, v in enumerate(sens) if v > t["sublayer_raw_input"]]
        if raw:
            out.append(
                Finding(
                    "warning",
                    "normalisation",
                    f"no normalisation in front of the sub-layers: when the input of {_blocks(raw, len(sens))} "
                    f"doubles, what the first sub-layer receives changes by {_fmt(min(sens[i] for i in raw))}–"
                    f"{_fmt(max(sens[i] for i in raw))} × (a LayerNorm in front would make it ≈ 0){growth}. "
                    "Without LayerNorm the sub-layers see a stream whose scale drifts with depth and training.",
                )
            )
        elif not out:
            out.append(
                Finding(
                    "ok",
                    "normalisation",
                    f"each block's sub-layers see a normalised input (insensitive to the stream's scale: "
                    f"≤ {_fmt(max(sens))}){growth}",
                )
            )
    return out


def _learning_rate(records, t) -> list[Finding]:
    medians = [(statistics.median(r["update_ratio"].values()), r) for r in records if r.get("update_ratio")]
    if not medians:
        return [Finding("note", "learning rate", "no update ratios recorded (they need at least one training step)")]
    peak, r = max(medians, key=lambda m: m[0])
    lr = f" at learning rate {_fmt(r['lr'])}" if "lr" in r else ""
    said = f"the median update/weight ratio ‖Δw‖/‖w‖ per step peaks at {_fmt(peak)} (step {r['step']}{lr})"
    if peak < t["update_ratio_low"]:
        return [
            Finding(
                "warning",
                "learning rate",
                f"learning rate far too low: {said}, under {_fmt(t['update_ratio_low'])}; the weights hardly move.",
            )
        ]
    if peak > t["update_ratio_high"]:
        return [
            Finding(
                "warning",
                "learning rate",
                f"learning rate far too high: {said}, over {_fmt(t['update_ratio_high'])}; "
                "each step rewrites a tenth of the weights.",
            )
        ]
    return [
        Finding(
            "ok",
            "learning rate",
            f"{said}, within {_fmt(t['update_ratio_low'])}–{_fmt(t['update_ratio_high'])}",
        )
    ]


def _heads(r, t) -> list[Finding]:
    ent, first = r.get("attn_entropy", []), r.get("attn_first", [])
    heads = [(b, h) for b, row in enumerate(ent) for h in range(len(row))]
    if not heads:
        return []
    uniform = [(b, h) for b, h in heads if ent[b][h] > t["head_uniform_entropy"]]
    collapsed = [(b, h) for b, h in heads if first and first[b][h] > t["head_first_token"]]
    out = []
    names = lambda hs: ", ".join(f"{b}.{h}" for b, h in hs[:8]) + (" …" if len(hs) > 8 else "")  # noqa: E731
    if uniform:
        late = r["step"] >= t["heads_learn_by_step"] if "step" in r else False
        all_dead = len(uniform) == len(heads)
        level = "warning" if (late and all_dead) else "note"
        phase = (
            "after this much training they should have learned to pick positions"
            if late
            else "normal early in training, before heads learn what to look at"
        )
        out.append(
            Finding(
                level,
                "attention heads",
                f"{len(uniform)} of {len(heads)} heads attend near-uniformly (entropy > {t['head_uniform_entropy']} "
                f"of the maximum; block.head {names(uniform)}): they average the context; {phase}",
            )
        )
    if collapsed:
        out.append(
            Finding(
                "note",
                "attention heads",
                f"{len(collapsed)} heads put over {t['head_first_token']:.0%} of their weight on the first position "
                f"({names(collapsed)}): collapsed or used as a resting place",
            )
        )
    if not out:
        out.append(
            Finding("ok", "attention heads", f"all {len(heads)} heads attend selectively (none uniform or collapsed)")
        )
    return out


def format_findings(findings: list[Finding]) -> str:
    tag = {"warning": "WARNING", "note": "note", "ok": "ok"}
    width = max(len(f.topic) for f in findings)
    lines = [f"{tag[f.level]:<7}  {f.topic:<{width}}  {f.text}" for f in findings]
    n = sum(f.level == "warning" for f in findings)
    lines.append(f"{n} warning{'s' if n != 1 else ''}" if n else "no warnings: nothing alarming")
    return "\n".join(lines)
