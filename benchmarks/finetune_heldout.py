"""Held-out assistant loss: a pretrained run against its fine-tuned run, on the same answers.

    python benchmarks/finetune_heldout.py --pretrained runs/pydocs --finetuned runs/pydocs-chat [--show 5]

Scores the fine-tuned run's held-out conversations (the built-in set's held-out sections, or
the held-out share of its --data file, split exactly as finetune split it). Every number is the
mean cross-entropy (nats per token) over the same tokens: the characters of the assistant's
answers. Rows:

  fine-tuned, template             the fine-tuned weights reading the chat template
  pretrained + new rows, template  the pretrained weights with finetune's mean-initialised rows for
                                   the special tokens: the model fine-tuning starts from (step 0)
  pretrained, plain "Q: ...\\nA: "  the pretrained weights reading a plain-text rendering with no
                                   special tokens, the fairest format for a model that never saw them

The "+ end" column also scores the end of the answer: <|end|> in the template (what finetune's val
loss measures), the newline after the answer in the plain format. Only conversations that fit the
window in both formats are scored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bricklm.config import BUILTIN_DATA
from bricklm.errors import UserError
from bricklm.finetune.conversations import builtin_conversations, load_conversations, render, split_heldout
from bricklm.finetune.data import Examples, make_example, masked_loss_sum
from bricklm.finetune.trainer import extend_vocab
from bricklm.model.generate import generate
from bricklm.storage.runs import load_run
from bricklm.text.tokenizer import ASSISTANT


def heldout_conversations(run_dir: Path):
    config = json.loads((run_dir / "config.json").read_text())
    settings = config["finetune"]
    if settings["data"] == BUILTIN_DATA:
        return builtin_conversations()[1]
    convs = load_conversations(settings["data"])
    return split_heldout(convs, settings["heldout_fraction"], config["train"]["seed"])[1]


def plain(base_tok, messages, with_end: bool = False):
    """'Q: question\\nA: answer\\n' per exchange; targets: the answer characters (and its newline)."""
    ids, is_target = [], []
    for m in messages:
        answer = m["role"] == "assistant"
        prefix = "Q: " if m["role"] == "user" else ("A: " if answer else "")
        for text, learn in ((prefix, False), (m["content"], answer), ("\n", answer and with_end)):
            piece = base_tok.encode(text) if text else []
            ids += piece
            is_target += [learn] * len(piece)
    return ids, is_target


def loss(model, examples, exclude=()):
    total, count = masked_loss_sum(model, examples, "cpu", exclude=exclude)
    return (total / count if count else float("nan")), count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pretrained", required=True, type=Path)
    ap.add_argument("--finetuned", required=True, type=Path)
    ap.add_argument("--show", type=int, default=0, help="print greedy answers to this many held-out questions")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    pre, ft = load_run(args.pretrained), load_run(args.finetuned)
    tok = ft.tokenizer
    block = ft.model_cfg.block_size
    convs = heldout_conversations(args.finetuned)
    template, plain_pairs, plain_end = [], [], []
    for messages in convs:
        t_ids, t_tgt = render(tok, messages, unknown="drop")
        try:
            p_ids, p_tgt = plain(tok.base, messages)
            p_end = make_example(*plain(tok.base, messages, with_end=True), block)
        except UserError:  # a character the pretrained vocabulary lacks: no fair plain-text score
            continue
        if max(len(t_ids), len(p_ids)) <= block + 1:
            template.append(make_example(t_ids, t_tgt, block))
            plain_pairs.append(make_example(p_ids, p_tgt, block))
            plain_end.append(p_end)
    if not template:
        raise SystemExit("no held-out conversation fits the window in both formats")
    t_ex, p_ex = Examples(template, block, tok.end_id), Examples(plain_pairs, block, 0)
    pe_ex = Examples(plain_end, block, 0)
    specials = list(tok.special_ids.values())
    start = extend_vocab(pre.model, tok.vocab_size).eval()
    rows = [
        ("fine-tuned, template", *loss(ft.model, t_ex, specials), loss(ft.model, t_ex)[0]),
        ("pretrained + new rows, template", *loss(start, t_ex, specials), loss(start, t_ex)[0]),
        ('pretrained, plain "Q: ...\\nA: "', *loss(pre.model, p_ex), loss(pre.model, pe_ex)[0]),
    ]
    print(f"{len(template)} of {len(convs)} held-out conversations fit the {block}-token window in both formats")
    print(f"{'model':<34} {'answer chars':>12} {'tokens':>7} {'+ end':>10}")
    for name, value, count, with_end in rows:
        print(f"{name:<34} {value:>12.4f} {count:>7} {with_end:>10.4f}")
    for messages in convs[: args.show]:
        question = [m for m in messages if m["role"] != "assistant"][:1]
        ids, _ = render(tok, question, add_generation_prompt=True, unknown="drop")
        assert ids[-1] == tok.id(ASSISTANT)
        out = []
        for t in generate(ft.model, torch.tensor([ids]), 150, temperature=0, stop_token=tok.end_id):
            if int(t[0]) in specials:
                break
            out.append(int(t[0]))
        print(f"\nQ: {question[0]['content']}\nexpected: {messages[1]['content']}\nanswered: {tok.decode(out)}")


if __name__ == "__main__":
    main()
