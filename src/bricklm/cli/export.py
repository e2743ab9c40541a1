"""`bricklm export`: a run to Hugging Face transformers, llama.cpp or Ollama (export/ does the work).

bricklm export --run runs/blog --format hf --out exports/blog-hf
bricklm export --run runs/blog-chat --checkpoint last --format gguf --out exports/blog-chat.gguf
bricklm export --run runs/blog --format ollama --gguf-dtype bfloat16 --out exports/blog-ollama

"""

from __future__ import annotations

from pathlib import Path

from bricklm.export import export_run
from bricklm.export.run import FORMATS, GGUF_DTYPES


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run to Hugging Face transformers (a folder), llama.cpp (a GGUF file) or Ollama (a folder)",
        description="Export a trained run as a stock architecture (GPT-2; Arcee, Llama or Qwen3 for rotary/RMSNorm "
        "runs): --format hf writes a folder that transformers loads with AutoModelForCausalLM/AutoTokenizer; "
        "--format gguf writes one file for llama.cpp; --format ollama writes a folder with the GGUF, a Modelfile "
        "and the `ollama create` line to run. See docs/export.md.",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="run directory from `bricklm train` or `finetune`")
    p.add_argument("--checkpoint", default="best", help="best (lowest val loss), last, or a step-... directory name")
    p.add_argument(
        "--format", required=True, choices=FORMATS, dest="fmt", help="hf: a folder; gguf: a file; ollama: a folder"
    )
    p.add_argument(
        "--gguf-dtype",
        default="float32",
        choices=GGUF_DTYPES,
        help="the GGUF's matrices (gguf, ollama): float32, bfloat16 (half the size), or float16, refused where "
        "the run's activations on its validation text exceed float16's 65,504 (ReLU² can)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="folder (hf, ollama) or file (gguf) to create")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier bricklm export at PATH")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    export_run(
        Path(args.run),
        args.checkpoint,
        args.fmt,
        Path(args.out),
        overwrite=args.overwrite,
        gguf_dtype=args.gguf_dtype,
        log=print,
    )
    return 0
