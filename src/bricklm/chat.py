"""`bricklm chat --run RUN2`: talk to a fine-tuned run in the terminal.

    $ bricklm chat --run runs/pydocs-chat
    you> What does the pass statement do?
    bot> "pass" is a null operation — when it is executed, nothing happens.

Each reply is streamed as it is sampled and ends at <|end|> (or --max-new-tokens). The history
is re-rendered with the chat template every turn; when it no longer fits the context window
with room for a reply, the oldest turns are dropped first and chat says so. `/reset` forgets
the history, `/quit` (or end of input) leaves. Works with input piped in, not only a terminal.
"""

from __future__ import annotations

import sys

import torch

from bricklm.chat_data import ChatTokenizer, render
from bricklm.errors import UserError
from bricklm.generate import check_sampling_settings

HELP = "commands: /reset (forget the conversation), /quit (leave)"


def register(sub) -> None:
    p = sub.add_parser(
        "chat",
        help="chat in the terminal with a fine-tuned run (from `bricklm finetune`)",
        description="A terminal chat with a run made by `bricklm finetune`. " + HELP + ".",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="fine-tuned run directory")
    p.add_argument("--checkpoint", default="best", help="best (lowest val loss), last, or a step-... directory name")
    p.add_argument("--system", default=None, help="a system message placed before the conversation")
    p.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=200, dest="max_new_tokens",
                   help="longest reply, in tokens")  # fmt: skip
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy; higher = more random")
    p.add_argument("--top-k", "--top_k", type=int, default=None, dest="top_k", help="sample from the k likeliest")
    p.add_argument("--top-p", "--top_p", type=float, default=None, dest="top_p", help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.set_defaults(func=cmd_chat)


class Chat:
    """The conversation state and one reply at a time; `say` yields the reply's text piece by piece."""

    def __init__(self, model, tokenizer: ChatTokenizer, *, system=None, max_new_tokens=200, device="cpu",
                 generator=None, notify=print, **sampling):  # fmt: skip
        self.model, self.tok, self.system = model, tokenizer, system
        self.max_new_tokens, self.device, self.generator = max_new_tokens, device, generator
        self.sampling, self.notify = sampling, notify
        self.history: list[dict[str, str]] = []
        self.last_reply_cut = False
        block = model.config.block_size
        # Leave room for a reply: the whole --max-new-tokens if it fits in half the window, else half.
        self.prompt_budget = block - min(max_new_tokens, block // 2)

    def reset(self) -> None:
        self.history = []

    def prompt_ids(self) -> list[int]:
        """The rendered history plus <|assistant|>, dropping the oldest turns until it fits the budget."""
        while True:
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + self.history
            ids, _ = render(self.tok, messages, add_generation_prompt=True, unknown="drop")
            if len(ids) <= self.prompt_budget or len(self.history) <= 1:
                break
            # Drop the oldest exchange: the first user message and the reply to it.
            drop = 2 if len(self.history) > 2 and self.history[1]["role"] == "assistant" else 1
            self.history = self.history[drop:]
            self.notify("(context window full: dropped the oldest turn)")
        if len(ids) > self.prompt_budget:
            self.notify(f"(message too long for the {self.model.config.block_size}-token window: only its end is read)")
            ids = ids[-self.prompt_budget :]
        return ids

    def say(self, text: str):
        """Add the user's message (notes come now) and return an iterator over the reply's text pieces."""
        unknown = sorted({c for c in text if not self.tok.encode(c, unknown="drop")})
        if unknown:
            self.notify(f"(dropped characters not in the vocabulary: {''.join(unknown)!r})")
        self.history.append({"role": "user", "content": text})
        idx = torch.tensor([self.prompt_ids()], dtype=torch.long, device=self.device)
        return self._reply(idx)

    def _reply(self, idx: torch.Tensor):
        """Yield the reply as it is generated; once it ends, it joins the history."""
        from bricklm.cli import TextStream
        from bricklm.generate import generate

        specials = set(self.tok.special_ids.values())
        stream, reply, ended = TextStream(self.tok), [], False
        for token in generate(self.model, idx, self.max_new_tokens, generator=self.generator,
                              stop_token=self.tok.end_id, **self.sampling):  # fmt: skip
            t = int(token[0])
            if t in specials:  # <|end|>, or a role token: either way the turn is over
                ended = True
                break
            reply.append(t)
            piece = stream.push(t)
            if piece:
                yield piece
        rest = stream.flush()
        if rest:
            yield rest
        self.history.append({"role": "assistant", "content": self.tok.decode(reply)})
        self.last_reply_cut = not ended


def cmd_chat(args) -> int:
    from bricklm.runs import load_run
    from bricklm.train import resolve_device

    check_sampling_settings(args.max_new_tokens, args.temperature, args.top_p, least=1)
    device = resolve_device(args.device)
    run = load_run(args.run, args.checkpoint, device)
    if not isinstance(run.tokenizer, ChatTokenizer):
        raise UserError(f"{args.run} has no chat tokens; fine-tune it first: bricklm finetune --from {args.run}")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    interactive = sys.stdin.isatty()

    def notify(message: str) -> None:
        print(message, file=sys.stderr if interactive else sys.stdout, flush=True)

    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    chat = Chat(run.model, run.tokenizer, system=args.system, max_new_tokens=args.max_new_tokens, device=device,
                generator=gen, notify=notify, **sampling)  # fmt: skip
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
