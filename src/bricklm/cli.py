"""The `bricklm` command: one subcommand per step of the flow, user errors as one line.

    bricklm prepare ~/blog/_posts --out corpus/
    bricklm train --data corpus/ --out runs/blog
    bricklm sample --run runs/blog --prompt "The " --max-new-tokens 300
    bricklm info --run runs/blog

Commands that live in their own module register themselves through `register(subparsers)`;
add the module's name to COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import sys
import time
from pathlib import Path

from bricklm import __version__
from bricklm.errors import UserError

COMMAND_MODULES: tuple[str, ...] = (
    "bricklm.experiments",  # sweep, ablate, bench-devices
    "bricklm.report",  # overfit, samples-by-loss, report
    "bricklm.finetune",  # finetune
    "bricklm.chat",  # chat
    "bricklm.inspection",  # inspect
    "bricklm.export.command",  # export
)


def add_train_parser(sub) -> None:
    from bricklm.config import add_config_flags

    p = sub.add_parser(
        "train",
        help="train a GPT on a prepared corpus (or the built-in one)",
        description="Train a GPT. Settings come from the defaults, then --config FILE.toml, then flags.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="a recipe with [model] and [train] tables")
    p.add_argument("--data", metavar="DIR", help="corpus directory from `bricklm prepare` (default: built-in corpus)")
    p.add_argument("--out", metavar="RUN", help="run directory to create (default: runs/run-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its newest complete checkpoint")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from bricklm.config import load_config, overrides_from_args
    from bricklm.train import Trainer, format_summary

    overrides = overrides_from_args(args)
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.json"
        if not saved.is_file():
            raise UserError(f"cannot resume {run_dir}: no config.json there (is it a bricklm run directory?)")
        if "finetune" in json.loads(saved.read_text()):  # made by `bricklm finetune`: resume it as one
            from bricklm.finetune import cmd_finetune

            return cmd_finetune(args)
        model_cfg, train_cfg = config_from_run(saved, args.config, overrides)
        data = args.data or json.loads(saved.read_text()).get("data", {}).get("dir")
        if data and Path(data).resolve() == (run_dir / "corpus").resolve():
            data = None  # the built-in corpus, prepared inside the run
    else:
        if not args.out and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each process would pick its own time
            raise UserError("under torchrun, give --out RUN so that every process uses the same run directory")
        run_dir = Path(args.out or f"runs/run-{time.strftime('%Y%m%d-%H%M%S')}")
        model_cfg, train_cfg = load_config(args.config, overrides)
        data = args.data
    trainer = Trainer(model_cfg, train_cfg, data, run_dir, resume=bool(args.resume))
    result = trainer.run()
    if trainer.dist.is_main:  # under torchrun, one summary, not one per process
        print(format_summary(result))
    return 0


def config_from_run(saved: Path, config_file, overrides):
    """A resumed run starts from its own saved config; a file and flags may change train settings."""
    from bricklm.config import ModelConfig, TrainConfig, build, read_toml

    data = json.loads(saved.read_text())
    values = {"model": dict(data.get("model", {})), "train": dict(data.get("train", {}))}
    if config_file:
        for section, table in read_toml(config_file).items():
            values.setdefault(section, {}).update(table)
    for key, value in overrides.items():
        section = "model" if key in ModelConfig.__dataclass_fields__ else "train"
        values[section][key] = value
    return build(ModelConfig, values["model"], "model"), build(TrainConfig, values["train"], "train")


def add_sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained run, streamed as it is produced")
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
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    import torch

    from bricklm.generate import check_sampling_settings, encode_prompt, generate
    from bricklm.runs import load_run
    from bricklm.train import resolve_device

    check_sampling_settings(args.max_new_tokens, args.temperature, args.top_p)
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}")
    device = resolve_device(args.device)
    run = load_run(args.run, args.checkpoint, device)
    idx = encode_prompt(run.tokenizer, args.prompt, device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        sys.stdout.write(args.prompt)
        stream = TextStream(run.tokenizer)
        for token in generate(
            run.model, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
            top_p=args.top_p, generator=gen, use_cache=not args.no_cache,
        ):  # fmt: skip
            sys.stdout.write(stream.push(int(token[0])))
            sys.stdout.flush()
        sys.stdout.write(stream.flush() + "\n")
    return 0


class TextStream:
    """Turns token ids into text as they arrive; holds back an incomplete multi-byte character."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.shown = tokenizer, [], 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        new, self.shown = text[self.shown :], len(text)
        return new

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids)
        new, self.shown = text[self.shown :], len(text)
        return new


def add_info_parser(sub) -> None:
    from bricklm.config import ModelConfig, TrainConfig, add_config_flags

    p = sub.add_parser("info", help="the model in the GPT-3 paper's terms (n_params, n_layers, d_model, ...)")
    p.add_argument("--run", metavar="RUN", help="a run directory")
    p.add_argument("--config", metavar="FILE.toml", help="or a recipe (vocab_size defaults to 107, the blog's)")
    add_config_flags(p, (ModelConfig, TrainConfig))
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from bricklm.config import load_config, overrides_from_args
    from bricklm.model import count_params

    if args.run:
        from bricklm.runs import load_run

        run = load_run(args.run)
        model_cfg, train_cfg = run.model_cfg, run.train_cfg
    else:
        model_cfg, train_cfg = load_config(args.config, overrides_from_args(args))
        if model_cfg.vocab_size == 0:
            model_cfg.vocab_size = 107
    print(format_info(model_cfg, train_cfg, count_params(model_cfg)))
    return 0


def format_info(model_cfg, train_cfg, n_params: int) -> str:
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
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bricklm",
        description="Turn your own writing into a small GPT: prepare a corpus, train, sample, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"bricklm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from bricklm import prepare

    p = sub.add_parser("prepare", help="build a corpus (text, vocabulary, token files) from your files")
    prepare.add_arguments(p)
    p.set_defaults(func=prepare.run)
    add_train_parser(sub)
    add_sample_parser(sub)
    add_info_parser(sub)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that isn't UTF-8, or a console that can't show
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):  # a character,
            stream.reconfigure(errors="backslashreplace")  # is printed escaped instead of crashing
    try:
        return args.func(args)
    except UserError as exc:
        print(f"bricklm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # train's clean stop (interrupts.Interrupted) says where it saved
        print(f"bricklm: {exc or 'interrupted'}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:  # `bricklm sample | head` closing the pipe is not an error
        return 0
    except OSError as exc:  # a full disk is the user's to fix, wherever the write was; other OSErrors are bugs
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"bricklm: error: disk full: {exc.strerror} ({exc.filename or 'writing output'})", file=sys.stderr)
        return 1
