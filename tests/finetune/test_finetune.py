"""Fine-tuning: the conversation format, the chat tokenizer, masking, vocabulary extension, LoRA, the command."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from bricklm.cli import main
from bricklm.config import ModelConfig
from bricklm.errors import UserError
from bricklm.finetune.conversations import builtin_conversations, load_conversations, render, render_text
from bricklm.finetune.data import IGNORE, make_example
from bricklm.finetune.lora import LoRALinear, apply_lora, lora_modules, merge_lora, merged_state_dict
from bricklm.finetune.trainer import extend_vocab
from bricklm.model.gpt import GPT
from bricklm.text.tokenizer import (
    ASSISTANT,
    END,
    SPECIALS,
    USER,
    BPETokenizer,
    CharTokenizer,
    ChatTokenizer,
    tokenizer_from_dict,
)
from conftest import FT_FLAGS, TINY_CHATS, write_jsonl


def tiny_gpt(vocab=12, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=vocab, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=True)
    cfg.update(kw)
    return GPT(ModelConfig(**cfg))


# --- the JSONL format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"text": "hi"}', 'needs "messages"'),
        ('{"prompt": "hi"}', '"response" must be a string'),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "role 'bot'"),
        ('{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}', "non-empty"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant message"),
        (
            '{"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}, '
            '{"role": "assistant", "content": "z"}]}',
            "system message may only come first",
        ),
    ],
)
def test_bad_lines_are_errors_naming_the_line(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "c.jsonl", [TINY_CHATS[0], "", bad])  # line 2 blank, line 3 bad
    with pytest.raises(UserError) as e:
        load_conversations(path)
    assert "c.jsonl:3: " in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_both_record_kinds_and_blank_lines(tmp_path):
    pair = {"prompt": "p", "response": "r", "system": "s", "id": 7}  # other keys ("id") are ignored
    path = write_jsonl(tmp_path / "c.jsonl", [pair, "", TINY_CHATS[1]])
    convs = load_conversations(path)
    assert [m["role"] for m in convs[0]] == ["system", "user", "assistant"]
    assert convs[1] == TINY_CHATS[1]["messages"]
    with pytest.raises(UserError, match="holds no conversations"):
        load_conversations(write_jsonl(tmp_path / "empty.jsonl", [""]))


def test_cli_reports_a_bad_line_in_one_line(tmp_path, tiny_run, capsys):
    path = write_jsonl(tmp_path / "c.jsonl", [TINY_CHATS[0], '{"prompt": 3, "response": "x"}'])
    assert main(["finetune", "--from", str(tiny_run), "--data", str(path), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bricklm: error:") and "c.jsonl:2:" in err and "\n" not in err


# --- the tokenizer and the template --------------------------------------------------------------


def test_chat_tokenizer_ids_follow_the_base_and_round_trip():
    base = CharTokenizer.from_text("abc ?")
    tok = ChatTokenizer(base, SPECIALS, added_chars=["é"])
    assert [tok.id(s) for s in SPECIALS] == [5, 6, 7, 8] and tok.vocab_size == 10
    assert tok.encode("ab") == base.encode("ab")  # existing ids unchanged
    assert tok.encode("aéb") == [base.encode("a")[0], 9, base.encode("b")[0]]
    a = base.encode("a")[0]
    assert tok.decode([tok.id(USER), a, 9, tok.end_id]) == f"{USER}aé{END}"
    assert tok.decode([tok.id(USER), a, tok.end_id], skip_specials=True) == "a"
    with pytest.raises(UserError):
        tok.encode("<|end|>")  # text never becomes a special token; here its characters are unknown
    assert tok.encode("xa", unknown="drop") == base.encode("a")
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and again.to_dict()["type"] == "chat" and again.to_dict()["base"] == base.to_dict()


def test_render_marks_only_assistant_content_and_its_end():
    tok = ChatTokenizer(CharTokenizer.from_text("abcxyz"))
    messages = [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "xy"}]
    ids, is_target = render(tok, messages)
    a, x, y = (tok.encode(c)[0] for c in "axy")
    assert ids == [tok.id(USER), a, a + 1, tok.end_id, tok.id(ASSISTANT), x, y, tok.end_id]
    assert is_target == [False, False, False, False, False, True, True, True]
    assert render_text(messages) == f"{USER}ab{END}{ASSISTANT}xy{END}"
    ids, is_target = render(tok, messages[:1], add_generation_prompt=True)
    assert ids[-1] == tok.id(ASSISTANT) and not any(is_target)


def test_builtin_conversations_are_deterministic_and_split_by_answer():
    train, heldout = builtin_conversations()
    assert (train, heldout) == builtin_conversations()
    assert len(train) > 200 and len(heldout) > 30
    asked = {c[0]["content"]: c[1]["content"] for c in train + heldout}
    assert asked["What does the assert statement do?"].startswith("Assert statements are a convenient way")
    train_answers = {m["content"] for c in train for m in c if m["role"] == "assistant"}
    assert not train_answers & {c[1]["content"] for c in heldout}  # held-out answers never trained on
    assert any(len(c) == 4 for c in train)  # some two-turn conversations


# --- masking ------------------------------------------------------------------------------------


def grads(model, x, y):
    model.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_masked_targets_contribute_nothing_to_the_gradient():
    model = tiny_gpt()
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    is_target = [False, False, False, False, True, True, True, False, False]
    x, y = (torch.tensor([v]) for v in make_example(ids, is_target, block_size=16))
    assert y.tolist() == [[IGNORE, IGNORE, IGNORE, 5, 6, 7, IGNORE, IGNORE]]
    # The last token is only ever a target, and a masked one: changing it changes nothing.
    x2, y2 = (torch.tensor([v]) for v in make_example(ids[:-1] + [2], is_target, 16))
    assert torch.equal(x, x2)
    for g1, g2 in zip(grads(model, x, y), grads(model, x2, y2), strict=True):
        assert torch.equal(g1, g2)
    # Control: when that position is a target, changing it does change the gradient.
    unmasked = is_target[:-1] + [True]
    g_a = grads(model, *(torch.tensor([v]) for v in make_example(ids, unmasked, 16)))
    g_b = grads(model, *(torch.tensor([v]) for v in make_example(ids[:-1] + [2], unmasked, 16)))
    assert any(not torch.equal(a, b) for a, b in zip(g_a, g_b, strict=True))
    # And the loss is exactly the mean over the target positions alone.
    logits, loss = model(x, y)
    keep = y[0] != IGNORE
    assert torch.allclose(loss, F.cross_entropy(logits[0][keep], y[0][keep]))


def test_right_truncation_and_nothing_left():
    ids, is_target = list(range(10)), [False] * 8 + [True] * 2
    assert make_example(ids, is_target, block_size=4) is None  # the assistant part is past the cut
    x, y = make_example(ids, is_target, block_size=8)
    assert x == list(range(8)) and y == [IGNORE] * 7 + [8]


# --- vocabulary extension -----------------------------------------------------------------------


@pytest.mark.parametrize("tie", [False, True])
def test_extend_vocab_keeps_every_existing_row(tie):
    model = tiny_gpt(vocab=12, tie_weights=tie)
    big = extend_vocab(model, 16)
    old, new = model.state_dict(), big.state_dict()
    for key, t in old.items():
        if key in ("tok_emb.weight", "head.weight", "head.bias"):
            assert new[key].shape[0] == 16 and torch.equal(new[key][:12], t)
            assert torch.allclose(new[key][12:], t.mean(0).expand_as(new[key][12:]))
        else:
            assert torch.equal(new[key], t), key
    if tie:
        assert big.head.weight is big.tok_emb.weight
    x = torch.randint(0, 12, (2, 10))
    assert torch.equal(model.eval()(x)[0], big.eval()(x)[0][..., :12])  # old tokens: the same logits


# --- LoRA ---------------------------------------------------------------------------------------


def test_lora_merged_model_equals_adapted_model():
    model = tiny_gpt()
    names = apply_lora(model, rank=4, alpha=8.0)
    assert names == [f"blocks.{i}.{t}" for i in range(2) for t in ("attn.c_attn", "attn.c_proj", "ffn.fc", "ffn.proj")]
    torch.manual_seed(1)
    for m in lora_modules(model).values():
        torch.nn.init.normal_(m.lora_B, std=0.5)  # B starts at zero; make the update matter
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith(("tok_emb", "head")) for n in trainable)
    x = torch.randint(0, 12, (2, 12))
    model.eval()
    adapted = model(x)[0]
    assert not torch.allclose(adapted, extend_vocab_free_reference(model, x), atol=1e-4)
    plain = GPT(model.config).eval()
    plain.load_state_dict(merged_state_dict(model))
    merged = merge_lora(copy.deepcopy(model)).eval()
    assert not lora_modules(merged)
    torch.testing.assert_close(plain(x)[0], adapted, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged(x)[0], adapted, rtol=1e-5, atol=1e-5)


def extend_vocab_free_reference(model, x):
    """The same model with its adapters switched off (B = 0): the base model's logits."""
    ref = copy.deepcopy(model)
    for m in lora_modules(ref).values():
        torch.nn.init.zeros_(m.lora_B)
    return ref(x)[0]


def test_lora_on_torch_mha_adapts_the_ffn_only():
    model = tiny_gpt(attention="torch_mha")
    notes = []
    names = apply_lora(model, rank=2, alpha=2.0, log=notes.append)
    assert names == [f"blocks.{i}.ffn.{t}" for i in range(2) for t in ("fc", "proj")]
    assert notes and "FFN only" in notes[0]
    assert isinstance(model.blocks[0].ffn.fc, LoRALinear)


# --- the command, end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("chats") / "chats.jsonl", TINY_CHATS)


def test_finetune_end_to_end_and_resume(tiny_run, chats, tmp_path):
    from bricklm.storage.runs import load_run

    out = tmp_path / "ft"
    assert main(["finetune", "--from", str(tiny_run), "--data", str(chats), "--out", str(out), *FT_FLAGS]) == 0
    for name in ("config.json", "tokenizer.json", "metrics.jsonl", "loss.png", "checkpoints"):
        assert (out / name).exists(), name
    pre, ft = load_run(tiny_run), load_run(out, "last")
    tok = ft.tokenizer
    assert isinstance(tok, ChatTokenizer) and tok.base == pre.tokenizer
    assert tok.added_chars == ["?"]  # the one character of the chats the tiny corpus lacks
    assert ft.model_cfg.vocab_size == pre.model_cfg.vocab_size + len(SPECIALS) + 1
    config = json.loads((out / "config.json").read_text())
    assert config["finetune"]["from"] == str(tiny_run)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m.get("eval")] == [0, 2, 4]
    assert main(["finetune", "--resume", str(out), "--max-iters", "6"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m.get("eval")] == [0, 2, 4, 6]
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    # `train --resume` (what an interrupted run suggests) continues a fine-tuning run as one.
    assert main(["train", "--resume", str(out), "--max-iters", "8"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 8
    assert main(["train", "--resume", str(out), "--n-layer", "3"]) == 1


def test_lora_finetune_saves_plain_weights_and_resumes(tiny_run, chats, tmp_path):
    from bricklm.storage import checkpoint as ckpt
    from bricklm.storage.runs import load_run

    out = tmp_path / "lora"
    args = ["finetune", "--from", str(tiny_run), "--data", str(chats), "--out", str(out), "--lora-rank", "2"]
    assert main([*args, *FT_FLAGS]) == 0
    run = load_run(out, "last")  # a plain GPT: sample, info and chat load it like any run
    c = ckpt.load_checkpoint(run.checkpoint)
    assert any(k.startswith("lora.") and k.endswith("lora_B") for k in c.state)
    # The saved weights are the merge of the saved base and adapters.
    adapted = GPT(run.model_cfg)
    apply_lora(adapted, 2, 4.0)
    from bricklm.finetune.lora import load_adapter_tensors

    adapted.load_state_dict(c.model, strict=False)
    load_adapter_tensors(adapted, c.state)
    x = torch.randint(0, run.model_cfg.vocab_size, (1, 8))
    torch.testing.assert_close(adapted.eval()(x)[0], run.model(x)[0], rtol=1e-5, atol=1e-5)
    # Pretrained block weights stay frozen: only embeddings, head and adapters moved.
    pre = load_run(tiny_run).model.state_dict()
    base_key = "lora.blocks.0.ffn.fc.base.weight"
    assert torch.equal(c.state[base_key], pre["blocks.0.ffn.fc.weight"])
    assert torch.equal(run.model.state_dict()["ln_f.weight"], pre["ln_f.weight"])
    assert main(["finetune", "--resume", str(out), "--max-iters", "6"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 6


def test_unknown_chars_drop_keeps_the_vocabulary(tiny_run, chats, tmp_path):
    from bricklm.storage.runs import load_run

    out = tmp_path / "drop"
    args = ["finetune", "--from", str(tiny_run), "--data", str(chats), "--out", str(out), "--unknown-chars", "drop"]
    assert main([*args, *FT_FLAGS]) == 0
    tok = load_run(out).tokenizer
    assert tok.added_chars == [] and tok.vocab_size == tok.base.vocab_size + len(SPECIALS)


def test_finetune_needs_from_or_resume(chats, tmp_path, capsys):
    assert main(["finetune", "--data", str(chats), "--out", str(tmp_path / "x")]) == 1
    assert "--from RUN" in capsys.readouterr().err


def test_finetune_help():
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--help"])
    assert e.value.code == 0


def test_chat_tokenizer_over_a_bpe_base():
    base = BPETokenizer.train(["the quick brown fox jumps over the lazy dog"] * 20, vocab_size=300)
    tok = ChatTokenizer(base)
    assert tok.id(SPECIALS[0]) == base.vocab_size and not tok.added_chars
    messages = [{"role": "user", "content": "the fox?"}, {"role": "assistant", "content": "héllo 🙂"}]
    ids, is_target = render(tok, messages)
    assert tok.decode(ids) == render_text(messages)
    assert tok.decode([i for i, t in zip(ids, is_target, strict=True) if t], skip_specials=True) == "héllo 🙂"
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok


def test_finetune_shows_a_reply_to_a_held_out_question_not_an_empty_sample(tiny_run, chats, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--from", str(tiny_run), "--data", str(chats), "--out", str(out), *FT_FLAGS]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    qa = summary["heldout_reply"]
    pairs = [
        (c["prompt"], c["response"]) if "prompt" in c else tuple(m["content"] for m in c["messages"])
        for c in TINY_CHATS
    ]
    assert (qa["question"], qa["expected"]) in pairs
    assert f"held-out question: {qa['question']}\nreply:    {qa['reply']}\nexpected: {qa['expected']}" in printed
    assert "sample:" not in printed and summary["sample"] == ""  # finetune draws no plain-text sample
