"""`bricklm finetune` and `bricklm chat`: teach a run to answer, then talk to it (finetune/ does the work)."""

from __future__ import annotations

import sys

import torch

from bricklm.cli.flags import add_compile_flag, add_config_flags, overrides_from_args
from bricklm.config import FINETUNE_TRAIN_DEFAULTS, FinetuneConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.finetune.chat import Chat
from bricklm.finetune.trainer import finetune
from bricklm.model.generate import check_sampling_settings
from bricklm.storage.runs import format_summary, load_run
from bricklm.text.tokenizer import ChatTokenizer
from bricklm.training.hardware import resolve_device

HELP = "commands: /reset (forget the conversation), /quit (leave)"


def register(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a trained run on conversations (JSONL, or the built-in Q&A set) so it answers",
        description=(
            "Supervised fine-tuning: start from RUN's best weights, add the chat template's special tokens, "
            "and train on the assistant turns only. Settings: the defaults (fine-tuning's own for training), "
            "then --config's [finetune] and [train] tables, then flags; a resume starts from the run's own. "
            "See docs/finetune.md."
        ),
    )
    p.add_argument("--from", dest="source", metavar="RUN", help="pretrained run directory (from `bricklm train`)")
    p.add_argument("--checkpoint", help="which checkpoint of --from: best (default), last or step-...")
    p.add_argument("--out", metavar="RUN2", help="run directory to create (default: RUN-chat)")
    p.add_argument(
        "--resume",
        metavar="RUN2",
        help="continue the fine-tuning run in RUN2 with its own settings (--data and train settings may change)",
    )
    p.add_argument(
        "--config", metavar="FILE.toml", help="a recipe: its [finetune] and [train] tables (flags win over both)"
    )
    # the train defaults shown are a full fine-tune's; --lora-rank's help says what LoRA changes
    add_config_flags(p, (FinetuneConfig, TrainConfig), defaults=FINETUNE_TRAIN_DEFAULTS)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "chat",
        help="chat in the terminal with a fine-tuned run (from `bricklm finetune`)",
        description="A terminal chat with a run made by `bricklm finetune`. " + HELP + ".",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="fine-tuned run directory")
    p.add_argument("--checkpoint", default="best", help="best (lowest val loss), last, or a step-... directory name")
    p.add_argument("--system", default=None, help="a system message placed before the conversation")
    p.add_argument(
        "--max-new-tokens",
        "--max_new_tokens",
        type=int,
        default=200,
        dest="max_new_tokens",
        help="longest reply, in tokens",
    )
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy; higher = more random")
    p.add_argument("--top-k", "--top_k", type=int, default=None, dest="top_k", help="sample from the k likeliest")
    p.add_argument("--top-p", "--top_p", type=float, default=None, dest="top_p", help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=1337)
    add_compile_flag(p)  # a chat lives long: the compile's seconds are paid once, every reply is faster
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.set_defaults(func=cmd_chat)


def cmd_finetune(args) -> int:
    """`bricklm finetune`: the flags as they are, to the library, which merges them (finetune/settings.py)."""
    result, run_dir = finetune(
        source=args.source,
        checkpoint=args.checkpoint,
        out=args.out,
        resume=args.resume,
        recipe=args.config,
        overrides=overrides_from_args(args, (FinetuneConfig, TrainConfig)),
    )
    report(result, run_dir)
    return 0


def report(result: dict, run_dir) -> None:
    """What a finished fine-tune prints (also after `bricklm train --resume` of one)."""
    print(format_summary(result))
    print(f"chat with it: bricklm chat --run {run_dir}")


def cmd_chat(args) -> int:
    check_sampling_settings(args.max_new_tokens, args.temperature, args.top_p, least=1, seed=args.seed)
    device = resolve_device(args.device)
    run = load_run(args.run, args.checkpoint, device)
    if not isinstance(run.tokenizer, ChatTokenizer):
        raise UserError(f"{args.run} has no chat tokens; fine-tune it first: bricklm finetune --from {args.run}")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    interactive = sys.stdin.isatty()

    def notify(message: str) -> None:
        print(message, file=sys.stderr if interactive else sys.stdout, flush=True)

    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "compiled": args.compile}
    chat = Chat(
        run.model,
        run.tokenizer,
        system=args.system,
        max_new_tokens=args.max_new_tokens,
        device=device,
        generator=gen,
        notify=notify,
        **sampling,
    )
    print(f"chatting with {args.run} ({run.model_cfg.block_size}-token window). {HELP}", flush=True)
    while True:
        if interactive:
            try:
                line = input("you> ")
            except EOFError:
                print()
                break
        else:
            line = sys.stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
        text = line.strip()
        if not text:
            continue
        if not interactive:
            print(f"you> {text}", flush=True)  # so a piped session reads like a transcript
        if text.startswith("/"):
            command = text.split()[0].lower()
            if command in ("/quit", "/exit"):
                break
            if command == "/reset":
                chat.reset()
                print("(conversation reset)", flush=True)
            else:
                print(f"(unknown command {command}; {HELP})", flush=True)
            continue
        pieces = chat.say(text)
        sys.stdout.write("bot> ")
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        if chat.last_reply_cut:
            notify(f"(reply cut at --max-new-tokens {args.max_new_tokens})")
    return 0
