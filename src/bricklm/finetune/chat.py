"""A conversation with a fine-tuned run, one streamed reply at a time (`bricklm chat`, the studio's chat).

    $ bricklm chat --run runs/pydocs-chat
    you> What does the pass statement do?
    bot> "pass" is a null operation — when it is executed, nothing happens.

Each reply is streamed as it is sampled and ends at <|end|> (or --max-new-tokens). The history
is re-rendered with the chat template every turn; when it no longer fits the context window
with room for a reply, the oldest turns are dropped first and chat says so. `/reset` forgets
the history, `/quit` (or end of input) leaves. Works with input piped in, not only a terminal.
"""

from __future__ import annotations

import torch

from bricklm.finetune.conversations import render
from bricklm.model.generate import TextStream, generate
from bricklm.text.tokenizer import ASSISTANT, ChatTokenizer


class Chat:
    """The conversation state and one reply at a time; `say` yields the reply's text piece by piece."""

    def __init__(
        self,
        model,
        tokenizer: ChatTokenizer,
        *,
        system=None,
        max_new_tokens=200,
        device="cpu",
        generator=None,
        notify=print,
        **sampling,
    ):
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
        """The rendered history plus <|assistant|>, dropping the oldest turns until it fits the budget.

        Each message is rendered once and the oldest are dropped by subtracting their length, so a long
        history costs time in proportion to its length, not its square (the template renders a message
        the same way whatever surrounds it).
        """
        system = (
            render(self.tok, [{"role": "system", "content": self.system}], unknown="drop")[0] if self.system else []
        )
        turns = [render(self.tok, [m], unknown="drop")[0] for m in self.history]
        total = len(system) + sum(len(t) for t in turns) + 1  # + <|assistant|>
        first = 0
        while total > self.prompt_budget and len(self.history) - first > 1:
            # Drop the oldest exchange: the first user message and the reply to it.
            drop = 2 if len(self.history) - first > 2 and self.history[first + 1]["role"] == "assistant" else 1
            total -= sum(len(t) for t in turns[first : first + drop])
            first += drop
            self.notify("(context window full: dropped the oldest turn)")
        self.history = self.history[first:]
        ids = [*system, *(i for t in turns[first:] for i in t), self.tok.id(ASSISTANT)]
        if len(ids) > self.prompt_budget:
            self.notify(f"(message too long for the {self.model.config.block_size}-token window: only its end is read)")
            ids = ids[-self.prompt_budget :]
        return ids

    def say(self, text: str):
        """Add the user's message (notes come now) and return an iterator over the reply's text pieces."""
        unknown = sorted(c for c in set(text) if not self.tok.encode(c, unknown="drop"))
        if unknown:
            self.notify(f"(dropped characters not in the vocabulary: {''.join(unknown)!r})")
        self.history.append({"role": "user", "content": text})
        return self.reply(self.prompt_ids())

    def reply(self, ids: list[int], veto=None, tries: int = 4):
        """Yield the reply to `ids` (from prompt_ids) as it is generated; once it ends, it joins the history.
        veto, tries: generate's (a veto refuses tokens)."""
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        specials = set(self.tok.special_ids.values())
        stream, reply, ended = TextStream(self.tok), [], False
        for token in generate(
            self.model,
            idx,
            self.max_new_tokens,
            generator=self.generator,
            stop_token=self.tok.end_id,
            veto=veto,
            tries=tries,
            **self.sampling,
        ):
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
