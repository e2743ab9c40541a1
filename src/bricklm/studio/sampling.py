"""The two jobs the engine runs: continue a prompt, or reply in a chat. Each yields Pieces as tokens come.

    ids = prompt_ids(served, "The ")                            # UserError for characters the run lacks
    for piece in completion(served, ids, Settings(max_tokens=50)): ...
    chat, ids = chat_prompt(served, messages, settings)          # the conversation, tokenized once
    for piece in chat_reply(served, chat, ids, settings): ...

Both are iterators the engine advances a token at a time on its worker threads. A Piece carries the
text that is ready (TextStream holds back half a multi-byte character; `stop` strings hold back
what could still be the start of one), the token ids behind it, and, last, why generation
ended: "stop" (a stop string, or the end of a chat turn), "length" (max_tokens) or "content_filter"
(the privacy guard, --max-copied, refused every token it tried: the text would have recited training text).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from bricklm.finetune.chat import Chat
from bricklm.model.generate import TextStream, encode_prompt, generate
from bricklm.studio.models import Served


@dataclass
class Settings:
    """Sampling settings of one request, already checked against the limits (api.py)."""

    max_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    def generator(self) -> torch.Generator:
        """A generator of the request's own: seeded requests repeat, and no request moves another's RNG."""
        return torch.Generator().manual_seed(self.seed if self.seed is not None else secrets.randbits(63))

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


@dataclass
class Piece:
    text: str
    ids: list[int] = field(default_factory=list)
    finish: str | None = None  # set on the last piece only

    @property
    def tokens(self) -> int:
        return len(self.ids)


class StopText:
    """Cuts the text at the first stop string; holds back a tail that might be the start of one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buffer = ""

    def push(self, text: str, final: bool = False) -> tuple[str, bool]:
        """(text that is safe to show, whether a stop string was found)."""
        self.buffer += text
        hits = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buffer = self.buffer[: min(hits)], ""
            return out, True
        keep = 0 if final else self.hold
        cut = max(0, len(self.buffer) - keep)
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out, False


def prompt_ids(served: Served, prompt: str) -> list[int]:
    """The prompt as ids (an empty prompt starts from token 0); a UserError names characters the run lacks."""
    return encode_prompt(served.tokenizer, prompt)[0].tolist()


def completion(served: Served, ids: list[int], s: Settings, guard=None) -> Iterator[Piece]:
    """Continue `ids` for up to s.max_tokens tokens (the model sees the last block_size of them). guard: a
    TokenGuard (copying.py) that steers away from training text, or ends the text ("content_filter")."""
    text, stop = TextStream(served.tokenizer), StopText(s.stop)
    idx = torch.tensor([ids], dtype=torch.long)
    veto = {"veto": guard.veto, "tries": guard.tries} if guard else {}
    for token in generate(served.model, idx, s.max_tokens, generator=s.generator(), **veto, **s.sampling()):
        t = int(token[0])
        out, stopped = stop.push(text.push(t))
        yield Piece(out, [t])
        if stopped:
            yield Piece("", finish="stop")
            return
    out, _ = stop.push(text.flush(), final=True)
    yield Piece(out, finish="content_filter" if guard and guard.stopped else "length")


def chat_prompt(served: Served, messages: list[dict[str, str]], s: Settings) -> tuple[Chat, list[int]]:
    """The Chat that will reply to a conversation ending with a user message, and the prompt ids it will
    read: the conversation rendered as `bricklm chat` renders it (finetune's template), each message
    tokenized once, the oldest turns dropped to fit the window beside the reply. Blocking."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    chat = Chat(
        served.model,
        served.tokenizer,
        system=system,
        max_new_tokens=s.max_tokens,
        generator=s.generator(),
        notify=lambda note: None,
        **s.sampling(),
    )
    chat.history = [dict(m) for m in (messages[1:] if system is not None else messages)]
    return chat, chat.prompt_ids()


def chat_reply(served: Served, chat: Chat, ids: list[int], s: Settings, guard=None) -> Iterator[Piece]:
    """The assistant's reply to the prompt `ids` from chat_prompt, piece by piece (guard: as completion's)."""
    stop = StopText(s.stop)
    for piece in chat.reply(ids, **({"veto": guard.veto, "tries": guard.tries} if guard else {})):
        out, stopped = stop.push(piece)
        yield Piece(out, served.tokenizer.encode(piece, unknown="drop"))
        if stopped:
            yield Piece("", finish="stop")
            return
    out, _ = stop.push("", final=True)
    if guard and guard.stopped:
        yield Piece(out, finish="content_filter")
    else:
        yield Piece(out, finish="length" if chat.last_reply_cut else "stop")
