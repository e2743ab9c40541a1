"""Sampling from a trained GPT: temperature, top-k, top-p, a KV cache, streaming.

    for token_ids in generate(model, prompt_ids, max_new_tokens=200, temperature=0.8, generator=g):
        print(tokenizer.decode(token_ids[0]), end="", flush=True)

Context policy (the same for the cached and the plain path, so they agree token for token):
the model sees at most `block_size` tokens; when the context is full, the oldest half is
dropped and the rest re-read. Re-reading half a window every block_size/2 tokens keeps
a KV cache useful past the window, which sliding by one token each step would not. The rule
is written once (prompt_window, slide) and replayed by context_start, for whatever looks back
at a generated token (the studio's look inside).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator

import torch

from bricklm.errors import UserError
from bricklm.model.decode import DecodeStep
from bricklm.model.gpt import GPT, evaluating
from bricklm.text.tokenizer import can_encode


def check_sampling_settings(
    max_new_tokens: int,
    temperature: float,
    top_p: float | None,
    least: int = 0,
    length_flag: str = "--max-new-tokens",
    seed: int | None = None,
) -> None:
    """User-facing checks shared by every command that samples: one clear error instead of a torch traceback
    or a blank sample. length_flag: what the command calls max_new_tokens (samples-by-loss: --chars)."""
    if max_new_tokens < least:
        raise UserError(f"{length_flag} must be >= {least}, got {max_new_tokens}")
    if seed is not None and not 0 <= seed < 2**64:  # a torch.Generator seed is 64-bit
        raise UserError(f"--seed must be in 0..{2**64 - 1}, got {seed}")
    if not temperature >= 0:  # also refuses nan, which every comparison fails
        raise UserError(f"--temperature must be a number >= 0, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {top_p}")


def prompt_window(prompt_len: int, block: int) -> int:
    """Index of the first prompt token the sampler reads: as much of the prompt as fits, its last `block` tokens."""
    return max(0, prompt_len - block)


def slide(length: int, block: int) -> int:
    """How many of its oldest tokens a context drops once a new token makes it `length` long: none while it fits
    in `block`; once it outgrows it, all but the newest block//2 + 1 (which are re-read, rebuilding the cache)."""
    return 0 if length <= block else length - (block // 2 + 1)


def context_start(prompt_len: int, position: int, block: int) -> int:
    """Index of the first token the sampler's context held when it chose the token at `position`.

    Replays generate(): the context starts as prompt_window of the prompt; each new token is appended and the
    context slides. For a prompt token (position <= prompt_len): the window the prompt's pass gave it.
    """
    if position <= prompt_len:
        return prompt_window(position, block)
    start = prompt_window(prompt_len, block)
    for end in range(prompt_len + 1, position + 1):  # the context after appending the token at end - 1
        start += slide(end - start, block)
    return start


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """(B, V) logits → (B, V) logits with everything outside top-k / the top-p nucleus set to -inf.

    The likeliest token of each row always stays, whatever the settings: a top_p so small that float32
    rounds it to 0 would otherwise drop every token, and softmax over all -inf is NaN.
    """
    logits = logits / max(temperature, 1e-8)
    best = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    kept = logits.gather(-1, best)
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens ranked above it already cover top_p.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.scatter(-1, best, kept)


def pick(logits: torch.Tensor, temperature: float, top_k, top_p, generator) -> torch.Tensor:
    """Choose the next token for each row: greedy at temperature 0, else sample from the filtered softmax."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(filter_logits(logits.float(), temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def steer(logits: torch.Tensor, nxt: torch.Tensor, veto, tries: int, again) -> torch.Tensor | None:
    """nxt (1, 1), or a token picked again (again(logits)) without each one veto refuses, up to `tries` times;
    None when every pick was refused."""
    for _ in range(tries):
        if not veto(int(nxt[0])):
            return nxt
        logits = logits.scatter(-1, nxt, float("-inf"))  # (1, V): never the refused token again
        if torch.isinf(logits).all():
            return None
        nxt = again(logits)
    return None if veto(int(nxt[0])) else nxt


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    fast: bool = True,
    compiled: bool = False,
    stop_token: int | None = None,
    veto: Callable[[int], bool] | None = None,
    tries: int = 4,
) -> Iterator[torch.Tensor]:
    """Yield each new token as a (B, 1) tensor. idx (B, T) is the prompt (at least one token).

    use_cache keeps keys and values (KV cache) instead of re-reading the context for every token;
    fast then decodes each token with the fused step (decode.py) rather than the modules' forward, and
    compiled with that step compiled (a few seconds once per model shape and process; decode.py).
    veto (batch of one only): called with each token picked; True refuses it, and the token is picked
    again without it, up to `tries` more times; when every try is refused, generation ends there.
    """
    if idx.size(1) == 0:
        raise ValueError("generation needs at least one prompt token")
    block = model.config.block_size
    context = idx[:, prompt_window(idx.size(1), block) :]
    caches = step = None
    with evaluating(model):
        for _ in range(max_new_tokens):
            if use_cache and caches is not None and caches[0].length < block:
                logits = step(context[:, -1:]) if fast else model(context[:, -1:], caches=caches)[0][:, -1]
            elif use_cache:
                caches = model.new_caches(idx.size(0), idx.device)
                logits = model(context, caches=caches)[0][:, -1]  # the prompt (or a re-read window) at once
                step = DecodeStep(model, caches, compiled=compiled)
            else:
                logits = model(context)[0][:, -1]
            nxt = pick(logits, temperature, top_k, top_p, generator)
            if veto is not None:
                nxt = steer(logits, nxt, veto, tries, lambda x: pick(x, temperature, top_k, top_p, generator))
                if nxt is None:
                    return
            yield nxt
            if stop_token is not None and bool((nxt == stop_token).all()):
                return
            context = torch.cat([context, nxt], dim=1)
            drop = slide(context.size(1), block)
            if drop:
                context = context[:, drop:]
                caches = None  # rebuilt from what is left


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int, device="cpu", **kwargs) -> str:
    """Convenience: prompt string → the generated continuation (not including the prompt)."""
    ids = encode_prompt(tokenizer, prompt, device)
    out = [int(t[0]) for t in generate(model, ids, max_new_tokens, **kwargs)]
    return tokenizer.decode(out)


def sample_text(model: GPT, tokenizer, chars: int, device="cpu", seed: int = 1337, temperature: float = 0.8) -> str:
    """What training shows of a model: `chars` tokens from a newline (token 0 if the vocabulary has none),
    at `bricklm sample`'s default temperature, from a generator of its own (training's RNG is untouched)."""
    prompt = "\n" if can_encode(tokenizer, "\n") else ""
    gen = torch.Generator(device=device).manual_seed(seed)
    return generate_text(model, tokenizer, prompt, chars, device, generator=gen, temperature=temperature)


def encode_prompt(tokenizer, prompt: str, device="cpu") -> torch.Tensor:
    """The prompt's ids as (1, T); an empty prompt starts from token 0, like the blog."""
    prompt = unicodedata.normalize("NFC", prompt)  # the corpus was NFC-normalised, so "é" typed as e + U+0301 fits
    ids = tokenizer.encode(prompt) if prompt else [0]
    return torch.tensor([ids], dtype=torch.long, device=device)


class TextStream:
    """Turns token ids into text as they arrive; holds back an incomplete multi-byte character."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.shown = tokenizer, [], 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        new, self.shown = text[self.shown :], len(text)
        return new

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids)
        new, self.shown = text[self.shown :], len(text)
        return new
