"""`bricklm train`, `bricklm sample` and `bricklm info`: the core flow's commands."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from bricklm.cli.finetune import report
from bricklm.cli.flags import add_compile_flag, add_config_flags, overrides_from_args
from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.finetune.trainer import finetune
from bricklm.model.generate import TextStream, check_sampling_settings, encode_prompt, generate
from bricklm.model.gpt import count_params
from bricklm.recipes import load_config, resolve
from bricklm.storage.copying import run_index
from bricklm.storage.runs import CONFIG, format_summary, load_run, read_run_config, read_summary
from bricklm.text.copyindex import MIN_SPAN
from bricklm.training.continued import INIT_FROM, continued, lineage_line
from bricklm.training.hardware import resolve_device
from bricklm.training.trainer import Trainer

DEVICES = ("auto", "cpu", "cuda", "mps")
# What `info` prints depends on these alone: the model settings that change the parameter count or the
# head width, and the two train settings of the GPT-3 table (tests/cli/test_cli.py checks that no other does).
INFO_FIELDS = (
    "vocab_size",
    "block_size",
    "n_layer",
    "n_head",
    "n_embd",
    "bias",
    "attention",
    "positional",
    "norm",
    "activation",  # swiglu's three round(8C/3)-wide matrices hold a few parameters fewer than two 4C-wide ones
    "tie_weights",
    "ffn_bias",
    "head_bias",
    "batch_size",
    "learning_rate",
)


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a GPT on a prepared corpus (or the built-in one)",
        description="Train a GPT. Settings come from the defaults, then --config FILE.toml, then flags. "
        "--init-from RUN continues a trained model on new writing: its weights and shape, your training settings.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="a recipe with [model] and [train] tables")
    p.add_argument("--data", metavar="DIR", help="corpus directory from `bricklm prepare` (default: built-in corpus)")
    p.add_argument("--out", metavar="RUN", help="run directory to create (default: runs/run-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its newest complete checkpoint")
    p.add_argument(
        "--init-from",
        metavar="RUN",
        help="start a new run (--out) from RUN's best weights, with a fresh optimiser and schedule, on --data: a "
        "corpus prepared with `bricklm prepare ... --tokenizer-from RUN`; the model's shape is RUN's, the training "
        "settings yours",
    )
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sample",
        help="generate text from a trained run, streamed as it is produced",
        description="Generate text from a trained run. After each sample, a line on stderr says what it copied "
        "verbatim from the training text: its longest copied span (characters, and the document it comes from) "
        "and the share of the text inside copied spans of --min-span characters or more. The run's copying "
        "index (RUN/copying) is built on first use if the corpus it trained on is still there.",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="run directory from `bricklm train`")
    p.add_argument("--checkpoint", default="best", help="best (lowest val loss), last, or a step-... directory name")
    p.add_argument("--prompt", default="", help="text to continue (default: start from token 0, like the blog)")
    p.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=500, dest="max_new_tokens")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random")
    p.add_argument("--top-k", "--top_k", type=int, default=None, dest="top_k", help="sample from the k likeliest")
    p.add_argument("--top-p", "--top_p", type=float, default=None, dest="top_p", help="nucleus sampling mass")
    p.add_argument("--num-samples", "--num_samples", type=int, default=1, dest="num_samples")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context each token (slow)")
    add_compile_flag(p)
    p.add_argument("--device", default="cpu", choices=DEVICES)
    add_min_span_flag(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "info",
        help="the model in the GPT-3 paper's terms (n_params, n_layers, d_model, ...)",
        description="The GPT-3 paper's table for a run, a recipe, or flags: only the settings that change "
        "what it shows are flags here (the parameter count's, and the batch size and learning rate).",
    )
    p.add_argument("--run", metavar="RUN", help="a run directory")
    p.add_argument("--config", metavar="FILE.toml", help="or a recipe (vocab_size defaults to 107, the blog's)")
    add_config_flags(p, (ModelConfig, TrainConfig), only=INFO_FIELDS)
    p.set_defaults(func=cmd_info)


def add_min_span_flag(p) -> None:
    p.add_argument(
        "--min-span",
        type=int,
        default=MIN_SPAN,
        metavar="N",
        help=f"copied spans count toward the share copied from N characters on (default {MIN_SPAN}; shorter "
        "matches are mostly common words and phrases)",
    )


def check_min_span(n: int) -> None:
    if n < 1:
        raise UserError(f"--min-span must be >= 1, got {n}")


def cmd_train(args) -> int:
    overrides = overrides_from_args(args)
    extra, build_model = None, None
    if args.init_from and args.resume:
        raise UserError(
            "--init-from starts a new run from another run's weights and --resume continues a run in place: give one"
        )
    if args.resume:
        run_dir = Path(args.resume)
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise UserError(
                f"--resume {run_dir} continues that run in place; --out {args.out} would be ignored (to train a "
                "copy, copy the run directory first and resume the copy)"
            )
        if not (run_dir / CONFIG).is_file():
            raise UserError(f"cannot resume {run_dir}: no config.json there (is it a bricklm run directory?)")
        saved = read_run_config(run_dir)
        if "finetune" in saved:  # made by `bricklm finetune`: resumed as one (a --data is its conversations)
            changes = {**overrides, **({"data": args.data} if args.data else {})}
            report(*finetune(resume=run_dir, recipe=args.config, overrides=changes))
            return 0
        model_cfg, train_cfg = resolve(saved, args.config, overrides)  # the run's own settings, then changes
        extra = {INIT_FROM: saved[INIT_FROM]} if INIT_FROM in saved else None  # a continued run keeps its lineage
        data = args.data or saved.get("data", {}).get("dir")
        if data and Path(data).resolve() == (run_dir / "corpus").resolve():
            data = None  # the built-in corpus, prepared inside the run
    else:
        if not args.out and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each process would pick its own time
            raise UserError("under torchrun, give --out RUN so that every process uses the same run directory")
        run_dir = Path(args.out or f"runs/run-{time.strftime('%Y%m%d-%H%M%S')}")
        data = args.data
        if args.init_from:
            start = continued(args.init_from, data, args.config, overrides)
            model_cfg, train_cfg, extra, build_model = start.model_cfg, start.train_cfg, start.config, start.build_model
        else:
            model_cfg, train_cfg = load_config(args.config, overrides)
    trainer = Trainer(
        model_cfg, train_cfg, data, run_dir, resume=bool(args.resume), build_model=build_model, extra_config=extra
    )
    result = trainer.run()
    if trainer.dist.is_main:  # under torchrun, one summary, not one per process
        print(format_summary(result))
    return 0


def cmd_sample(args) -> int:
    check_sampling_settings(args.max_new_tokens, args.temperature, args.top_p, seed=args.seed)
    check_min_span(args.min_span)
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}")
    device = resolve_device(args.device)
    run = load_run(args.run, args.checkpoint, device)
    idx = encode_prompt(run.tokenizer, args.prompt, device)
    index, why = run_index(args.run, log=lambda line: print(line, file=sys.stderr))
    if index is None:
        print(f"copied: not measured: {why}", file=sys.stderr)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        sys.stdout.write(args.prompt)
        stream, text = TextStream(run.tokenizer), []
        for token in generate(
            run.model,
            idx,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            generator=gen,
            use_cache=not args.no_cache,
            compiled=args.compile,
        ):
            text.append(stream.push(int(token[0])))
            sys.stdout.write(text[-1])
            sys.stdout.flush()
        text.append(stream.flush())
        sys.stdout.write(text[-1] + "\n")
        if index is not None:
            sys.stdout.flush()  # the sample first, then what it copied
            print(index.measure("".join(text), args.min_span).line(), file=sys.stderr)
    if index is not None:
        index.close()
    return 0


def cmd_info(args) -> int:
    if args.run:
        ignored = [f"--{k.replace('_', '-')}" for k in overrides_from_args(args)] + ["--config"] * bool(args.config)
        if ignored:
            raise UserError(
                f"{', '.join(ignored)} would be ignored with --run: info shows the run's own settings (give a "
                "recipe or flags without --run to see another model)"
            )
        run = load_run(args.run)
        model_cfg, train_cfg = run.model_cfg, run.train_cfg
        summary = read_summary(args.run) if (Path(args.run) / "summary.json").is_file() else None
        lineage = lineage_line(read_run_config(args.run))
    else:
        model_cfg, train_cfg = load_config(args.config, overrides_from_args(args))
        if model_cfg.vocab_size == 0:
            model_cfg.vocab_size = 107
        summary = None
        lineage = None
    print(format_info(model_cfg, train_cfg, count_params(model_cfg), summary))
    if lineage:
        print(lineage)
    return 0


def format_info(model_cfg, train_cfg, n_params: int, summary: dict | None = None) -> str:
    """The GPT-3 paper's table; for a finished run (summary.json), its final val loss too, per token and in bits
    per byte of text (the measure that compares across tokenizers)."""
    rows = [
        ("n_params", f"{n_params:,}"),
        ("n_layers", model_cfg.n_layer),
        ("d_model", model_cfg.n_embd),
        ("n_heads", model_cfg.n_head),
        ("d_head", model_cfg.head_size),
        ("batch size", train_cfg.batch_size),
        ("learning rate", f"{train_cfg.learning_rate:g}"),
        ("context window", model_cfg.block_size),
        ("vocabulary", model_cfg.vocab_size),
    ]
    if summary:
        rows.append(("val loss", f"{summary['val_loss']:.4f} (nats per token)"))
        if summary.get("val_bpb") is not None:
            rows.append(("val bits per byte", f"{summary['val_bpb']:.4f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
