"""`bricklm inspect`: see inside a model: weight shapes, the tensors of one forward pass, training
health (gradients, updates, activations, attention) as tables and PNG plots, and a diagnosis.

    bricklm inspect --run runs/blog                          # tables; health from metrics.jsonl if logged
    bricklm inspect --run runs/blog --steps 30 --diagnose    # train a copy 30 steps, then diagnose
    bricklm inspect --data corpus/ --n-layer 6 --residual bug --steps 50 --diagnose --plots out/
    bricklm inspect --config configs/seed/headline-10m.toml --vocab-size 107   # shapes only

Statistics live in health.py, the sentences in diagnosis.py; this module gathers, prints and plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bricklm.config import ModelConfig, TrainConfig, section_of
from bricklm.errors import UserError
from bricklm.files import atomic_write_json, check_out_dir, check_out_file
from bricklm.inspect.diagnosis import THRESHOLDS, diagnose, format_findings
from bricklm.inspect.probe import probe_training
from bricklm.model.generate import encode_prompt
from bricklm.model.gpt import GPT, evaluating
from bricklm.recipes import load_config, resolve, to_dict
from bricklm.storage.metrics import METRICS, read_metrics
from bricklm.storage.plots import plt, save
from bricklm.storage.runs import load_run, read_run_config
from bricklm.text.data import check_split_length, load_corpus
from bricklm.text.tokenizer import load_tokenizer
from bricklm.training.health import health_records, measure, probe_batch

BLOG_VOCAB = 107  # the blog corpus's vocabulary, for shape tables with neither a run nor a corpus


# --- tables --------------------------------------------------------------------------------


def _same_as_block0(name: str, n_layer: int, all_blocks: bool) -> bool:
    """Blocks 1.. have block 0's shapes: print them once unless --all-blocks."""
    return not all_blocks and n_layer > 1 and name.startswith("blocks.") and not name.startswith("blocks.0.")


def weight_table(model, all_blocks: bool = False) -> str:
    """Module, weight, shape, parameters and share of the total, in the order the data flows."""
    total = model.n_params()
    rows = []
    seen = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # a tied weight is counted once, where it first appears
                continue
            seen.add(id(p))
            if _same_as_block0(mod_name, len(model.blocks), all_blocks):
                continue
            rows.append((mod_name, type(module).__name__, p_name, tuple(p.shape), p.numel()))
    n_layer = len(model.blocks)
    if n_layer > 1 and not all_blocks:
        n = sum(p.numel() for p in model.blocks[0].parameters()) * (n_layer - 1)
        rows.append((f"blocks.1 … blocks.{n_layer - 1}", "(same as blocks.0)", "", f"× {n_layer - 1}", n))
    rows.append(("total", "", "", "", total))
    wm, wt, ww, ws = (max(len(str(r[i])) for r in rows) for i in range(4))
    lines = [f"{'module':<{wm}}  {'type':<{wt}}  {'weight':<{ww}}  {'shape':<{ws}}  {'params':>11}  {'share':>6}"]
    for mod, typ, pname, shape, n in rows:
        lines.append(f"{mod:<{wm}}  {typ:<{wt}}  {pname:<{ww}}  {str(shape):<{ws}}  {n:>11,}  {n / total:>6.1%}")
    return "\n".join(lines)


def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        return "(" + ", ".join(map(str, x.shape)) + ")"
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return _shape(x[0])
    return "-"


@torch.no_grad()
def trace_shapes(model, batch_size: int, block_size: int, all_blocks: bool = False) -> list[tuple[str, str, str, str]]:
    """(module, type, input shape, output shape) for every module, in call order, from one forward
    pass of a (batch_size, block_size) batch of token 0s, seen through forward hooks."""
    calls: list[tuple[str, str, str, str]] = []
    handles = []
    for name, module in model.named_modules():
        if not name or _same_as_block0(name, len(model.blocks), all_blocks):
            continue

        def hook(mod, args, output, name=name):
            calls.append((name, type(mod).__name__, _shape(args[0]) if args else "-", _shape(output)))

        handles.append(module.register_forward_hook(hook))
    try:
        with evaluating(model):
            model(torch.zeros(batch_size, block_size, dtype=torch.long, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return calls


def shapes_report(model, batch_size: int, block_size: int, all_blocks: bool = False) -> str:
    c = model.config
    B, T, C, nh, hs = batch_size, block_size, c.n_embd, c.n_head, c.head_size
    lines = [
        f"one forward pass: B={B} (batch) T={T} (block) C={C} (n_embd) nh={nh} (heads) hs={hs} (head size) "
        f"V={c.vocab_size} (vocabulary)",
    ]
    rows = []
    for name, typ, shape_in, shape_out in trace_shapes(model, B, T, all_blocks):
        rows.append((name, typ, shape_in, shape_out))
        if name.endswith(".attn"):  # a block without attention has no .attn module
            # The fused kernel never shows these; they are what the blog's "matrix sizes" are about.
            rows.append(("  inside attention", "q, k, v per head", "", f"({B}, {nh}, {T}, {hs})"))
            rows.append(("", "scores q·kᵀ/√hs", "", f"({B}, {nh}, {T}, {T})"))
            rows.append(("", "weights · v, merged", "", f"({B}, {T}, {C})"))
    wm, wt, wi = (max(len(r[i]) for r in rows + [("module", "type", "input")]) for i in range(3))
    lines.append(f"{'module':<{wm}}  {'type':<{wt}}  {'input':<{wi}}  output")
    lines += [f"{m:<{wm}}  {t:<{wt}}  {i:<{wi}}  {o}" for m, t, i, o in rows]
    if c.n_layer > 1 and not all_blocks:
        lines.append(f"(blocks.1 … blocks.{c.n_layer - 1} repeat blocks.0's shapes; --all-blocks prints them)")
    return "\n".join(lines)


def health_table(record: dict[str, Any]) -> str:
    """One health record as a table: a row per layer group."""
    g, u = record.get("grad_norm", {}), record.get("update_ratio", {})
    std, mean = record.get("act_std", []), record.get("act_mean", [])
    ent = record.get("attn_entropy", [])
    pas = record.get("passthrough", [])
    lines = [
        f"health at step {record.get('step', '?')} (loss {record.get('loss', float('nan')):.4f}"
        + (f", lr {record['lr']:.3g}" if "lr" in record else "")
        + ")",
        f"{'layer':<8} {'grad norm':>10} {'update/w':>9} {'act mean':>9} {'act std':>9} {'passthru':>9}  "
        "attention entropy per head",
    ]
    for layer in g:
        b = int(layer[5:]) if layer.startswith("block") else None
        act_i = 0 if layer == "embed" else (b + 1 if b is not None else None)
        cells = [
            f"{layer:<8}",
            f"{g[layer]:>10.3g}",
            f"{u[layer]:>9.2g}" if layer in u else f"{'-':>9}",
            f"{mean[act_i]:>9.3g}" if act_i is not None and act_i < len(mean) else f"{'-':>9}",
            f"{std[act_i]:>9.3g}" if act_i is not None and act_i < len(std) else f"{'-':>9}",
            f"{pas[b]:>9.3g}" if b is not None and b < len(pas) else f"{'-':>9}",
        ]
        heads = " ".join(f"{e:.2f}" for e in ent[b]) if b is not None and b < len(ent) else ""
        lines.append(" ".join(cells) + "  " + heads)
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------


def _step_colors(n: int):
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def plot_by_layer(records, key: str, path, ylabel: str, title: str, band=None) -> Path:
    """One line per record (step), x = layer group or stream position, log y."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r, color in zip(records, _step_colors(len(records)), strict=True):
        values = r.get(key)
        if not values:
            continue
        labels = list(values) if isinstance(values, dict) else ["embed"] + [f"block{i}" for i in range(len(values) - 1)]
        ys = list(values.values()) if isinstance(values, dict) else values
        ax.plot(range(len(ys)), ys, "o-", color=color, markersize=3, label=f"step {r.get('step', '?')}")
        ax.set_xticks(range(len(ys)), labels, rotation=60 if len(ys) > 12 else 0, fontsize=7)
    if band:
        ax.axhspan(*band, color="tab:green", alpha=0.1, label="healthy band")
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def layers_to_show(n_layer: int, most: int) -> list[int]:
    """Every block, or `most` of them evenly spread from the first to the last."""
    k = min(n_layer, most)
    return sorted({round(i * (n_layer - 1) / max(1, k - 1)) for i in range(k)})


def plot_attention(maps: list[torch.Tensor], tokens: list[str], path, max_layers: int = 8, max_heads: int = 8) -> Path:
    """A grid: a row per block (evenly picked if there are many), a column per head, each T×T."""
    rows = layers_to_show(len(maps), max_layers)
    n_head = min(maps[0].size(0), max_heads)
    fig, axes = plt.subplots(len(rows), n_head, figsize=(2.2 * n_head, 2.2 * len(rows)), squeeze=False)
    T = len(tokens)
    shown = ["␣" if t == " " else t if t.isprintable() else repr(t)[1:-1] for t in tokens]
    for ri, b in enumerate(rows):
        for h in range(n_head):
            ax = axes[ri][h]
            ax.imshow(maps[b][h].float().cpu().numpy(), cmap="magma", vmin=0, vmax=1)
            ax.set_title(f"block {b} head {h}", fontsize=7)
            if T <= 40:
                ax.set_xticks(range(T), shown, fontsize=5)
                ax.set_yticks(range(T), shown, fontsize=5)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle("attention weights (row = query position, column = key position it looks at)", fontsize=9)
    return save(fig, path)


@torch.no_grad()
def attention_maps(model, idx: torch.Tensor) -> list[torch.Tensor]:
    """(nh, T, T) attention weights of every block with attention, for one sequence idx (1, T)."""
    with evaluating(model):
        return [w[0] for w in model.trace(idx).weights if w is not None]


def write_plots(records, out_dir: Path, model=None, idx=None, tokens=None) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    if records:
        paths.append(
            plot_by_layer(records, "grad_norm", out_dir / "grad_norm.png", "‖gradient‖", "gradient norm by layer")
        )
        paths.append(
            plot_by_layer(records, "act_std", out_dir / "act_std.png", "std", "residual stream std after each block")
        )
        if any(r.get("update_ratio") for r in records):
            paths.append(
                plot_by_layer(
                    [r for r in records if r.get("update_ratio")],
                    "update_ratio",
                    out_dir / "update_ratio.png",
                    "‖Δw‖ / ‖w‖ per step",
                    "update-to-weight ratio by layer",
                    band=(THRESHOLDS["update_ratio_low"], THRESHOLDS["update_ratio_high"]),
                )
            )
    maps = attention_maps(model, idx) if model is not None and idx is not None else []
    if maps:
        paths.append(plot_attention(maps, tokens, out_dir / "attention.png"))
    return paths


# --- the command ---------------------------------------------------------------------------


@dataclass
class Target:
    """What `bricklm inspect` looks at: a model, its settings, and whatever data and history it has."""

    model: GPT
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    tokenizer: Any  # None for an untrained model without a corpus
    data_dir: str | None
    step: int  # the step the weights are from (0 untrained)
    metrics: list[dict[str, Any]]
    block_size: int  # the window the shape table and the probes use


def load_target(
    run: str | None, checkpoint: str, config: str | None, data: str | None, overrides: dict[str, Any], say=print
) -> Target:
    """A trained run (run) or an untrained model (config + overrides, vocabulary from data or the blog's)."""
    if run:
        if config:
            raise UserError("--config describes an untrained model; with --run the run's own settings are used")
        fixed = sorted(k for k in overrides if section_of(k) == "model" and k != "block_size")
        if fixed:
            raise UserError(
                f"--{fixed[0].replace('_', '-')} cannot change a trained run's model; with --run only --block-size "
                "(up to the model's) and training settings apply"
            )
        loaded = load_run(run, checkpoint)
        train = {k: v for k, v in overrides.items() if section_of(k) == "train"}
        _, train_cfg = resolve(to_dict(loaded.model_cfg, loaded.train_cfg), None, train)
        data_dir = data or read_run_config(run).get("data", {}).get("dir")
        metrics = read_metrics(run) if (Path(run) / METRICS).is_file() else []
        block = overrides.get("block_size", loaded.model_cfg.block_size)
        if not 0 < block <= loaded.model_cfg.block_size:
            raise UserError(f"--block-size must be 1..{loaded.model_cfg.block_size} (the model's context) for this run")
        step = int(loaded.trainer.get("step", 0))
        return Target(loaded.model, loaded.model_cfg, train_cfg, loaded.tokenizer, data_dir, step, metrics, block)
    model_cfg, train_cfg = load_config(config, overrides)
    tokenizer = None
    if data:
        path = Path(data) / "tokenizer.json"
        if not path.is_file():
            raise UserError(f"{data} is not a corpus directory (no tokenizer.json); run `bricklm prepare` first")
        tokenizer = load_tokenizer(path)
        if model_cfg.vocab_size not in (0, tokenizer.vocab_size):
            raise UserError(f"--vocab-size {model_cfg.vocab_size} but the corpus vocabulary has {tokenizer.vocab_size}")
        model_cfg.vocab_size = tokenizer.vocab_size
    elif model_cfg.vocab_size == 0:
        model_cfg.vocab_size = BLOG_VOCAB
        say(f"(no --data or --vocab-size: using the blog corpus's vocabulary, {BLOG_VOCAB})")
    torch.manual_seed(train_cfg.seed)  # the same untrained weights `train` would start from
    return Target(GPT(model_cfg), model_cfg, train_cfg, tokenizer, data, 0, [], model_cfg.block_size)


def inspect_model(
    *,
    run: str | None = None,
    checkpoint: str = "best",
    config: str | None = None,
    data: str | None = None,
    overrides: dict[str, Any] | None = None,
    steps: int = 0,
    prompt: str | None = None,
    plots: str | None = None,
    diagnose_it: bool = False,
    all_blocks: bool = False,
    json_path: str | None = None,
    say=print,
) -> list[dict]:
    """`bricklm inspect`: print the tables, health and (diagnose_it) the findings; return the health records."""
    if steps < 0:
        raise UserError(f"--steps must be >= 0, got {steps}")
    if prompt and not (plots or run):
        raise UserError("--prompt draws attention maps into a folder: give --plots DIR too")
    # Outputs that can't be written are refused now, not after the whole analysis has been printed.
    if plots:
        check_out_dir(plots, "--plots")
    if json_path:
        check_out_file(json_path, "--json")
    t = load_target(run, checkpoint, config, data, overrides or {}, say)
    plots_dir = Path(plots) if plots else (Path(run) / "inspect" if run else None)
    if plots_dir is not None and not plots:
        check_out_dir(plots_dir, "--plots (default RUN/inspect)")
    train_data = _corpus(t, explicit=bool(data), say=say)
    idx, tokens = _prompt_ids(prompt, t.tokenizer, train_data, t.train_cfg, t.model_cfg.block_size)  # refuse early
    say(f"model: {t.model.n_params():,} parameters, {t.model_cfg.n_layer} blocks")
    say(weight_table(t.model, all_blocks))
    say("")
    say(shapes_report(t.model, t.train_cfg.batch_size, t.block_size, all_blocks))

    records = [] if steps else health_records(t.metrics)
    source = "the run's --log-health records" if records else ""
    if not records and train_data is not None:
        if steps:
            records = probe_training(t.model, t.train_cfg, train_data, steps, start_step=t.step)
            source = f"{steps} steps of training on a copy of the model"
        else:
            batch = probe_batch(train_data, t.train_cfg, t.model_cfg.block_size, "cpu")
            records = [{"step": t.step, **measure(t.model, *batch)}]
            t.model.zero_grad(set_to_none=True)
            source = "one batch, no training (--steps N adds update ratios)"
    elif steps and train_data is None:
        raise UserError("--steps needs a corpus: give --data DIR (or --run a run whose corpus still exists)")
    say("")
    if records:
        say(f"training health, from {source}:")
        say(health_table(records[-1]))
    else:
        say("training health: needs a corpus (--data DIR) or a run trained with --log-health")

    if plots_dir is not None:
        paths = write_plots(records, plots_dir, t.model, idx, tokens)
        say("")
        say("plots: " + (", ".join(str(p) for p in paths) if paths else "none (no health records, no prompt)"))
    if json_path:
        atomic_write_json(json_path, records)
    if diagnose_it:
        say("")
        say("diagnosis:")
        say(format_findings(diagnose(records)))
    return records


def _corpus(t: Target, explicit: bool, say=print):
    """The train tokens for health batches and --steps, or None; the corpus's tokenizer fills in a missing one."""
    if not t.data_dir:
        return None
    if not Path(t.data_dir).is_dir():
        if explicit:
            raise UserError(f"corpus directory not found: {t.data_dir}")
        say(f"(the run's corpus {t.data_dir} is not here; --data DIR gives one for health batches and --steps)")
        return None
    train_data, _, corpus_tok, _ = load_corpus(t.data_dir)
    if corpus_tok.vocab_size != t.model_cfg.vocab_size:
        raise UserError(
            f"{t.data_dir}'s vocabulary ({corpus_tok.vocab_size}) is not the model's ({t.model_cfg.vocab_size})"
        )
    t.tokenizer = t.tokenizer or corpus_tok
    check_split_length(train_data, t.model_cfg.block_size, "train")
    return train_data


def _prompt_ids(prompt, tokenizer, train_data, train_cfg, block_size: int):
    """The sequence to draw attention maps for: the prompt, or the first 32 tokens of a training window."""
    if prompt:
        if tokenizer is None:
            raise UserError("--prompt needs a tokenizer: give --run or --data")
        ids = encode_prompt(tokenizer, prompt)[:, -block_size:]
    elif train_data is not None:
        ids = probe_batch(train_data, train_cfg, block_size, "cpu")[0][:1, : min(32, block_size)]
    else:
        return None, None
    return ids, [tokenizer.decode([int(i)]) for i in ids[0]]
