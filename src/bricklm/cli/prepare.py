"""`bricklm prepare SRC... --out DIR`: your writing into a corpus folder (prepare.py does the work)."""

from __future__ import annotations

from bricklm.cli.flags import add_config_flags, overrides_from_args
from bricklm.config import ModelConfig, PrepareConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.model.gpt import count_params
from bricklm.recipes import resolve_table
from bricklm.text.corpus import BUILTINS, explain
from bricklm.text.prepare import prepare
from bricklm.text.readers import listed
from bricklm.training.datasize import DataSize


def register(sub) -> None:
    parser = sub.add_parser("prepare", help="build a corpus (text, vocabulary, token files) from your files")
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SRC",
        help=f"files, folders (read recursively) and zips of writing: {listed()}. An export is recognised by "
        "its content. How to export each platform, and what is kept: docs/sources.md. None: the built-in "
        "python-docs corpus",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--out", help="corpus folder to write: new, empty, or a corpus prepared before (replaced only with --overwrite)"
    )
    target.add_argument(
        "--explain", metavar="FILE", help="print FILE before and after cleaning, and what was removed; writes nothing"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the corpus already in --out (never a folder of other files)"
    )
    parser.add_argument("--builtin", choices=BUILTINS, help="use a built-in corpus instead of SRC")
    parser.add_argument(
        "--config", metavar="FILE.toml", help="a recipe whose [prepare] table sets the options below (flags win)"
    )
    add_config_flags(parser, (PrepareConfig,))
    parser.set_defaults(func=cmd_prepare)


def prepare_config(args) -> PrepareConfig:
    """PrepareConfig's defaults, then --config FILE's [prepare] table, then the flags given."""
    return resolve_table(PrepareConfig, "prepare", None, args.config, overrides_from_args(args, (PrepareConfig,)))


def cmd_prepare(args) -> int:
    """Run `bricklm prepare` from parsed arguments and print the report (or, with --explain, one file)."""
    cfg = prepare_config(args)
    if args.explain:
        if args.sources or args.builtin:
            raise UserError("--explain shows one FILE; give it without SRC paths or --builtin")
        print(explain(args.explain, cfg.code, images=cfg.images, tables=cfg.tables))
        return 0
    report = prepare(args.sources, args.out, cfg, builtin=args.builtin, overwrite=args.overwrite)
    print(report.format())
    for line in default_run_lines(report.vocab_size, report.train_tokens):
        print(line)
    return 0


def default_run_lines(vocab_size: int, train_tokens: int) -> list[str]:
    """Where `bricklm train --data OUT` with the default settings would sit on this text (datasize.py)."""
    model, train = ModelConfig(vocab_size=vocab_size), TrainConfig()
    size = DataSize(count_params(model), train_tokens, train.batch_size * model.block_size, train.max_iters)
    lines = [f"the default model and training: {size.line()}", f"  {size.expectation()}"]
    return lines + ([f"warning: with the defaults, {size.warning()}"] if size.warning() else [])
