"""`bricklm prepare SRC... --out DIR`: your writing into a corpus folder (prepare.py does the work)."""

from __future__ import annotations

from bricklm.errors import UserError
from bricklm.text.corpus import BUILTINS, explain
from bricklm.text.markup import CODE_MODES, IMAGE_MODES, TABLE_MODES
from bricklm.text.prepare import SPLITS, prepare
from bricklm.text.streaming import TOKENIZERS


def register(sub) -> None:
    parser = sub.add_parser("prepare", help="build a corpus (text, vocabulary, token files) from your files")
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SRC",
        help="files and folders of writing (.md, .markdown, .txt, .html, .htm; folders are read recursively); "
        "none: the built-in python-docs corpus",
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
        "--split",
        choices=SPLITS,
        default="documents",
        help="documents: hold out whole documents, picked by --seed (default); "
        "tail: hold out the end of the text, like the blog",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of the text held out for validation (default 0.1)"
    )
    parser.add_argument("--seed", type=int, default=1337, help="seed for picking held-out documents (default 1337)")
    parser.add_argument(
        "--code", choices=CODE_MODES, default="drop", help="drop (default) or keep fenced code and highlight blocks"
    )
    parser.add_argument(
        "--images", choices=IMAGE_MODES, default="drop", help="drop images (default) or keep their alt text"
    )
    parser.add_argument(
        "--tables",
        choices=TABLE_MODES,
        default="keep",
        help="keep tables as one line per row, cells separated by commas (default), or drop them",
    )
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="char",
        help="char: one token per character, like the blog (default); "
        "bpe: byte-level BPE trained on the corpus with Hugging Face tokenizers",
    )
    parser.add_argument(
        "--vocab-size",
        "--vocab_size",
        type=int,
        default=4096,
        dest="vocab_size",
        help="most tokens the BPE vocabulary may have, at least 256 (default 4096; --tokenizer bpe only)",
    )
    parser.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    """Run `bricklm prepare` from parsed arguments and print the report (or, with --explain, one file)."""
    if args.explain:
        if args.sources or args.builtin:
            raise UserError("--explain shows one FILE; give it without SRC paths or --builtin")
        print(explain(args.explain, args.code, images=args.images, tables=args.tables))
        return 0
    report = prepare(
        args.sources,
        args.out,
        builtin=args.builtin,
        split=args.split,
        val_fraction=args.val_fraction,
        seed=args.seed,
        code=args.code,
        images=args.images,
        tables=args.tables,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        overwrite=args.overwrite,
    )
    print(report.format())
    return 0
