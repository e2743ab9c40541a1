"""`bricklm export`: a run to Hugging Face transformers or llama.cpp (export/ does the work).

bricklm export --run runs/blog --format hf --out exports/blog-hf
bricklm export --run runs/blog-chat --checkpoint last --format gguf --out exports/blog-chat.gguf

"""

from __future__ import annotations

from pathlib import Path

from bricklm.export import export_run


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run to Hugging Face transformers (a folder) or llama.cpp (a GGUF file)",
        description="Export a trained run in GPT-2's layout: --format hf writes a folder that transformers loads "
        "with AutoModelForCausalLM/AutoTokenizer; --format gguf writes one file for llama.cpp. See docs/export.md.",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="run directory from `bricklm train` or `finetune`")
    p.add_argument("--checkpoint", default="best", help="best (lowest val loss), last, or a step-... directory name")
    p.add_argument("--format", required=True, choices=("hf", "gguf"), dest="fmt", help="hf: a folder; gguf: a file")
    p.add_argument("--out", required=True, metavar="PATH", help="folder (hf) or file (gguf) to create")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier bricklm export at PATH")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    export_run(Path(args.run), args.checkpoint, args.fmt, Path(args.out), overwrite=args.overwrite, log=print)
    return 0
