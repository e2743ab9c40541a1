"""Conversations for fine-tuning: the JSONL format, its validation, the chat template, a built-in set.

    convs = load_conversations("chats.jsonl")            # list of message lists, validated
    tok = ChatTokenizer(base_tokenizer)                   # (tokenizer.py) base vocabulary + special tokens
    ids, is_target = render(tok, convs[0])                # template as ids; True on assistant tokens
    train, heldout = builtin_conversations()              # Q&A about Python's docs, no download

JSONL: one conversation per line, either
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
or  {"prompt": "...", "response": "..."}      (optionally with "system": "...")
Blank lines are skipped; other keys are ignored. Errors name the file and line.

The chat template (docs/finetune.md): every message is its role token, its content and <|end|>,

    <|system|>You are terse.<|end|><|user|>What is a list?<|end|><|assistant|>A list is ...<|end|>

and a reply is asked for by ending the prompt with <|assistant|>. The model learns (and is scored
on) only the assistant's content and its closing <|end|>, the token that tells chat to stop.
Special tokens are never produced by encoding text: a user typing "<|end|>" gets the characters.
"""

from __future__ import annotations

import builtins
import json
import random
import re
from pathlib import Path

from bricklm.errors import UserError
from bricklm.text.corpus import builtin_documents
from bricklm.text.tokenizer import ASSISTANT, END, ROLE_TOKEN, ChatTokenizer, can_encode


def missing_chars(base, conversations) -> list[str]:
    """Characters in the conversations that the base tokenizer cannot encode, in code point order."""
    seen = set()
    for messages in conversations:
        for m in messages:
            seen.update(m["content"])
    return sorted(c for c in seen if not can_encode(base, c))


# --- the JSONL format ----------------------------------------------------------------------


def parse_record(obj, where: str) -> list[dict[str, str]]:
    """One JSONL record → a validated list of {"role", "content"} messages; errors start with `where`."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise UserError(f'{where}: "messages" must be a non-empty list')
    elif "prompt" in obj or "response" in obj:
        for key in ("prompt", "response"):
            if not isinstance(obj.get(key), str):
                raise UserError(f'{where}: "{key}" must be a string')
        messages = [{"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["response"]}]
        if "system" in obj:
            messages.insert(0, {"role": "system", "content": obj["system"]})
    else:
        raise UserError(f'{where}: needs "messages" (a list) or "prompt" and "response"')
    out = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            raise UserError(f"{where}: message {i} must be an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLE_TOKEN:
            raise UserError(f"{where}: message {i} has role {role!r}; use user, assistant or system")
        if not isinstance(content, str) or not content:
            raise UserError(f'{where}: message {i} ({role}) needs a non-empty string "content"')
        if role == "system" and i != 1:
            raise UserError(f"{where}: message {i}: a system message may only come first")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise UserError(f"{where}: no assistant message, so nothing to learn from")
    return out


def load_conversations(path) -> list[list[dict[str, str]]]:
    """Read and validate a JSONL file of conversations; the first bad line is a UserError naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"conversation file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
        out.append(parse_record(obj, f"{path}:{n}"))
    if not out:
        raise UserError(f"{path} holds no conversations")
    return out


def split_heldout(conversations, fraction: float, seed: int) -> tuple[list, list]:
    """A seeded split of a user's file into (train, held-out); at least one of each when there are two."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_held = min(len(order) - 1, max(1, round(fraction * len(order)))) if len(order) > 1 else 0
    held = set(order[:n_held])
    return [c for i, c in enumerate(conversations) if i not in held], [conversations[i] for i in sorted(held)]


# --- the template ---------------------------------------------------------------------------


def render(tokenizer: ChatTokenizer, messages, add_generation_prompt: bool = False, unknown: str = "error"):
    """Messages → (ids, is_target): is_target marks assistant content and its <|end|>, what the loss sees."""
    ids: list[int] = []
    is_target: list[bool] = []
    for m in messages:
        body = [tokenizer.id(ROLE_TOKEN[m["role"]])] + tokenizer.encode(m["content"], unknown) + [tokenizer.end_id]
        ids += body
        learn = m["role"] == "assistant"
        is_target += [False] + [learn] * (len(body) - 1)  # never the role token: the prompt supplies it
    if add_generation_prompt:
        ids.append(tokenizer.id(ASSISTANT))
        is_target.append(False)
    return ids, is_target


def render_text(messages, add_generation_prompt: bool = False) -> str:
    """The template as a string, for reading and docs (training uses `render`, which never parses this)."""
    text = "".join(f"{ROLE_TOKEN[m['role']]}{m['content']}{END}" for m in messages)
    return text + (ASSISTANT if add_generation_prompt else "")


# --- the built-in conversation set -----------------------------------------------------------

_HEADING = re.compile(r"^(?P<title>[^\n]+)\n(?P<rule>[*=\-^~\"]+)\n", re.MULTILINE)
_SENTENCE = re.compile(r"(.+?(?<!\be\.g)(?<!\bi\.e)[.:!?])(?:\s|$)")
_NOT_PROSE = ("New in", "Changed in", "Note:", "Deprecated", "See also", "object.", "**")
MAX_ANSWER_CHARS = 100  # a first sentence longer than this is passed over
FIT_TOKENS = 129  # block_size + 1 for the default 128 window: every built-in conversation fits it whole
HELDOUT_EVERY = 6  # every sixth section (in title order) is held out: ~17% of the answers never trained on


def doc_sections() -> list[tuple[str, str]]:
    """(section title, first sentence of its prose) for each section of Python's pydoc topics."""
    found: dict[str, str] = {}
    for doc in builtin_documents("python-docs"):
        heads = [m for m in _HEADING.finditer(doc.text) if len(m["rule"]) == len(m["title"])]
        for i, m in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(doc.text)
            sentence = first_sentence(doc.text[m.end() : end])
            if sentence and m["title"] not in found:
                found[m["title"]] = sentence
    return sorted(found.items())


def first_sentence(body: str) -> str | None:
    """The first sentence of the first prose paragraph (not grammar, code, notes or version remarks)."""
    for para in re.split(r"\n\s*\n", body):
        if not para.strip() or para.startswith(" "):  # indented: grammar rules and code examples
            continue
        text = " ".join(para.split())
        if "::=" in text or text.startswith(_NOT_PROSE):
            continue
        m = _SENTENCE.match(text)
        sentence = m.group(1) if m else text
        if len(sentence) < 25 or not (sentence[0].isupper() or sentence[0] in '"*'):
            continue
        if sentence.endswith(":"):  # "... is used for conditional execution:" introduces a grammar block
            sentence = sentence[:-1] + "."
        return sentence if len(sentence) <= MAX_ANSWER_CHARS else None
    return None


def questions(title: str) -> list[str]:
    """Three ways to ask about a section: 'What does the "assert" statement do?', 'What is ...?', ..."""
    m = re.fullmatch(r'(?:The )?"(\w[\w *]*)" (statement|clause)', title)
    if m:
        name, kind = m.groups()
        return [f"What does the {name} {kind} do?", f"What is the {name} {kind} for?", f"Explain {name}."]
    # Title Case words become lower case ("Value Patterns" → "value patterns"); "OR", "Python", "None" stay.
    keep = {"Python"} | set(dir(builtins))  # "None", "Ellipsis" are names, not words
    subject = " ".join(w.lower() if re.fullmatch(r"[A-Z][a-z]+", w) and w not in keep else w for w in title.split())
    head = subject.split(" of ")[0].split(" (")[0].split()[-1]  # "resolution of names" → "resolution"
    verb = "are" if head.endswith("s") and not head.endswith("ss") and head not in keep else "is"
    return [f"What {verb} {subject}?", f"Tell me about {subject}.", f"Explain {subject}."]


def builtin_conversations() -> tuple[list, list]:
    """(train, held-out) conversations about the built-in corpus, deterministic, no download.

    Each documentation section gives up to three single-turn conversations (three phrasings of
    the question, its first sentence as the answer). Every HELDOUT_EVERY-th section is held out
    whole, so held-out answers are never trained on. Training also gets two-turn conversations
    (a section, then the next one short enough to fit), so the model sees a history before the question it answers.
    Only conversations whose template is at most FIT_TOKENS characters are kept, so with a
    character tokenizer none is cut by the default 128-token window.
    """

    def fits(messages) -> bool:
        return sum(len(m["content"]) + 2 for m in messages) <= FIT_TOKENS  # + role token and <|end|>

    train, heldout, singles = [], [], []
    for i, (title, answer) in enumerate(doc_sections()):
        convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": answer}] for q in questions(title)]
        convs = [c for c in convs if fits(c)]
        if i % HELDOUT_EVERY == HELDOUT_EVERY - 1:
            heldout += convs
        else:
            train += convs
            singles += convs[:1]
    for i, a in enumerate(singles):  # each short exchange followed by the next one that still fits
        b = next((b for b in singles[i + 1 :] + singles[:i] if fits(a + b)), None)
        if b is not None:
            train.append(a + b)
    return train, heldout
