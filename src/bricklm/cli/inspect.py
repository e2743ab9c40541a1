"""`bricklm inspect`: see inside a model (inspect/ does the work)."""

from __future__ import annotations

from bricklm.cli.flags import add_config_flags, overrides_from_args
from bricklm.config import ModelConfig, TrainConfig
from bricklm.inspect.inspection import inspect_model


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="see inside a model: shapes, gradient flow, activations, attention maps, a diagnosis",
        description=(
            "Inspect a trained run (--run) or an untrained model (--config and/or flags, with --data or "
            "--vocab-size). Prints weight shapes and the tensors of one forward pass; with a corpus, training "
            "health (from the run's --log-health records, or from --steps N of training on a copy); "
            "PNG plots with --plots; plain-sentence findings with --diagnose. Runs on the CPU, on a copy of "
            "the model; a run directory is only read (plots go to RUN/inspect/)."
        ),
    )
    p.add_argument("--run", metavar="RUN", help="a run directory from `bricklm train`")
    p.add_argument("--checkpoint", default="best", help="with --run: best, last, or a step-... directory name")
    p.add_argument("--config", metavar="FILE.toml", help="an untrained model from this recipe (flags override it)")
    p.add_argument("--data", metavar="DIR", help="corpus for health batches and --steps (default: the run's corpus)")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="train a copy of the model this many steps and measure health along the way (default: 0, or the "
        "run's logged health records when it has them)",
    )
    p.add_argument("--prompt", help="text whose attention maps to plot (default: the start of a training window)")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots here (default with --run: RUN/inspect)")
    p.add_argument("--diagnose", action="store_true", help="turn the figures into plain sentences")
    p.add_argument("--all-blocks", action="store_true", help="print every block in the tables, not just blocks.0")
    p.add_argument("--json", metavar="FILE", help="also write the health records to this JSON file")
    add_config_flags(p, (ModelConfig, TrainConfig))
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    inspect_model(
        run=args.run,
        checkpoint=args.checkpoint,
        config=args.config,
        data=args.data,
        overrides=overrides_from_args(args),
        steps=args.steps,
        prompt=args.prompt,
        plots=args.plots,
        diagnose_it=args.diagnose,
        all_blocks=args.all_blocks,
        json_path=args.json,
    )
    return 0
