"""A chat export as conversations in its owner's voice: what `finetune --data EXPORT --me NAME` trains on.

    export = read_chat(Path("WhatsApp Chat with Bob.txt"), PrepareConfig())     # bricklm.text.chatexport
    convs, made = voice_conversations(export, "Alice", 6.0, tokenizer, block_size=128)
    for line in made.describe(export, 6.0): print(line)

The owner's (me's) messages are the assistant's turns, everyone else's the user's; a ChatGPT
export's owner is its user unless `me` says otherwise ("assistant": learn to answer like ChatGPT).
Consecutive messages of one person are one turn (their lines joined); in a group, a user turn
starts with its sender's name ("Bob: ..."), since several people speak as the user. Each thread
is cut into conversations at silences longer than gap_hours, then at turn boundaries so each
conversation's template fits the window (block_size + 1 tokens) whole; a single turn longer than
the window is cut at the window and counted. A conversation with no turn of the owner teaches
nothing and is left out, counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from bricklm.errors import UserError
from bricklm.text.readers.chats import ChatExport, Message


@dataclass
class Made:
    """What a chat export became: the owner, conversations, turns per person, turns cut, conversations left out."""

    owner: str
    window: int
    conversations: int = 0
    turns: Counter = field(default_factory=Counter)
    cut: int = 0
    without_owner: int = 0

    def describe(self, export: ChatExport, gap_hours: float) -> list[str]:
        """The lines a fine-tune prints about what it made of a chat export."""
        per = ", ".join(
            f"{name} {n}" + (" (the model's voice)" if name == self.owner else " (prompts)")
            for name, n in self.turns.items()
        )
        lines = [
            f"{export.label}: {self.conversations} conversations (cut at silences over {gap_hours:g} h and to fit "
            f"the {self.window}-token window); turns by person: {per or 'none'}"
        ]
        if self.without_owner:
            lines.append(f"  {self.without_owner} conversations without a message from {self.owner} were left out")
        if self.cut:
            lines.append(f"  {self.cut} turns longer than the window were cut at it")
        if export.dropped:
            dropped = ", ".join(f"{kind} {n}" for kind, n in sorted(export.dropped.items()))
            lines.append(f"  system lines dropped: {dropped}")
        return lines + [f"  {note}" for note in export.notes]


def owner(export: ChatExport, me: str) -> str:
    """The sender whose messages are the assistant's: me, or the export's default; a UserError naming the senders
    found when there is none, or me is not one of them."""
    senders = export.senders()
    me = me or export.default_me or ""
    found = ", ".join(f"{name} ({n})" for name, n in senders.most_common(12)) or "none"
    if not me:
        raise UserError(f"give --me NAME, whose messages the model learns to write; {export.label} has: {found}")
    if me not in senders:
        near = [name for name in senders if name.casefold() == me.casefold()]
        if len(near) == 1:
            return near[0]
        raise UserError(f'no message from --me "{me}" in the {export.label}; the names in it: {found}')
    return me


def voice_conversations(
    export: ChatExport, me: str, gap_hours: float, tokenizer, block_size: int, unknown: str = "error"
) -> tuple[list[list[dict[str, str]]], Made]:
    """(conversations of {"role", "content"} messages, what was made): see the module's docstring."""
    me = owner(export, me)
    gap = timedelta(hours=gap_hours)
    made = Made(me, block_size + 1)
    out = []
    for thread in export.threads:
        group = len({m.sender for m in thread.messages} - {me}) > 1
        for session in _sessions(thread.messages, gap):
            turns = [_turn(run, me, group) for run in _runs(session)]
            for conv in _packed(turns, tokenizer, made, unknown):
                if not any(m["role"] == "assistant" for m in conv):
                    made.without_owner += 1
                    continue
                made.conversations += 1
                made.turns.update(m["sender"] for m in conv)
                out.append([{"role": m["role"], "content": m["content"]} for m in conv])
    return out, made


def _sessions(messages: list[Message], gap: timedelta) -> list[list[Message]]:
    """The messages cut wherever the silence between two is longer than gap (unknown times never cut)."""
    sessions: list[list[Message]] = []
    for m in messages:
        last = sessions[-1][-1] if sessions else None
        if last is None or (m.time is not None and last.time is not None and m.time - last.time > gap):
            sessions.append([])
        sessions[-1].append(m)
    return sessions


def _runs(messages: list[Message]) -> list[list[Message]]:
    runs: list[list[Message]] = []
    for m in messages:
        if runs and runs[-1][-1].sender == m.sender:
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def _turn(run: list[Message], me: str, group: bool) -> dict[str, str]:
    sender = run[0].sender
    text = "\n".join(m.text for m in run)
    if sender == me:
        return {"role": "assistant", "content": text, "sender": sender}
    return {"role": "user", "content": f"{sender}: {text}" if group else text, "sender": sender}


def _packed(turns: list[dict], tokenizer, made: Made, unknown: str) -> list[list[dict]]:
    """Turns grouped, in order, into conversations whose template (role token, content, <|end|> each) fits the
    window. A conversation is cut before an exchange (the user's turns and the owner's reply to them) that would
    not fit, so a question stays with its answer; an exchange too long alone is cut between its turns, and a
    turn too long alone is cut at the window."""
    window = made.window
    sized = []
    for turn in turns:
        ids = tokenizer.encode(turn["content"], unknown)
        if len(ids) + 2 > window:
            ids = ids[: window - 2]
            turn = {**turn, "content": tokenizer.decode(ids)}
            made.cut += 1
        if ids:
            sized.append((turn, len(ids) + 2))
    exchanges: list[list[tuple[dict, int]]] = []
    for turn, size in sized:
        if not exchanges or (turn["role"] == "user" and exchanges[-1][-1][0]["role"] == "assistant"):
            exchanges.append([])
        exchanges[-1].append((turn, size))
    convs: list[list[dict]] = []
    used = window  # forces a new conversation for the first turn
    for exchange in exchanges:
        whole = sum(size for _, size in exchange)
        if used + whole > window and used:
            convs.append([])
            used = 0
        for turn, size in exchange:
            if used + size > window:
                convs.append([])
                used = 0
            convs[-1].append(turn)
            used += size
    return convs
