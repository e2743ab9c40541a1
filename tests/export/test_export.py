"""`bricklm export`: every exportable switch combination gives transformers the same logits and text.

Each combination trains its own tiny model (a second or so), exports it to a Hugging Face folder,
loads it with transformers and compares logits and 60 greedy tokens with bricklm's. The GGUF file
is read back with gguf.GGUFReader; llama.cpp itself is checked by benchmarks/export_llamacpp.py.
"""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import runhelp
from bricklm.cli import main
from bricklm.config import ModelConfig, PrepareConfig
from bricklm.export import export_run
from bricklm.export.vocab import byte_alphabet
from bricklm.export.weights import export_architecture, fold_head_bias, gpt2_weights
from bricklm.finetune.conversations import render, render_text
from bricklm.model.gpt import GPT
from bricklm.recipes import load_config
from bricklm.storage.runs import load_run
from bricklm.text.prepare import prepare
from bricklm.text.tokenizer import END, SPECIALS
from conftest import TINY_TEXT

# Characters of one, two, three and four UTF-8 bytes, so the character vocabulary exercises every merge depth.
TEXT = TINY_TEXT + "Café au lait costs 3 € — naïve? 🙂\n"
MODEL_FLAGS = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "96"]
FAST = ["--max-iters", "12", "--eval-interval", "12", "--eval-iters", "1", "--batch-size", "8", "--sample-chars", "0"]
TOLERANCE = 1e-4  # max abs logit difference allowed; measured values are ~1e-6 (docs/export.md)
quiet = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small gain nothing from a second thread, and lose a lot when the cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "posts").mkdir()
    for i in range(4):
        (root / "posts" / f"p{i}.md").write_text(f"# Post {i}\n\n" + TEXT, encoding="utf-8")
    prepare([root / "posts"], root / "char", log=quiet)
    prepare([root / "posts"], root / "bpe", PrepareConfig(tokenizer="bpe", vocab_size=300), log=quiet)
    return root


def train(corpora, name: str, *flags: str) -> Path:
    data = "bpe" if "bpe" in name else "char"
    run = corpora / "runs" / name
    runhelp.train(corpora / data, run, *MODEL_FLAGS, *FAST, *flags)
    return run


def greedy(model, ids: list[int], n: int) -> list[int]:
    """bricklm's model, greedy, the whole context each step (what `sample --temperature 0 --no-cache` does)."""
    ids = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    return ids


def prompts(tokenizer, width: int) -> list[list[int]]:
    """Four windows of the corpus text, `width` tokens each: a batch needing no padding."""
    ids = tokenizer.encode(TEXT)
    return [ids[s : s + width] for s in (0, 37, 101, len(ids) - width)]


# Every combination of the four switches the issue names; the attention kind and attention biases are
# varied across them too, so each of manual / torch_mha / sdpa and bias on / off is exported several times.
COMBOS = list(itertools.product(("learned", "sinusoidal"), ("gelu", "relu"), ("tied", "untied"), ("char", "bpe")))


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_transformers_matches_bricklm(corpora, tmp_path, combo):
    positional, activation, tie, tokenizer = combo
    i = COMBOS.index(combo)
    attention, bias = ("manual", "torch_mha", "sdpa")[i % 3], ("--bias", "--no-bias")[i // 2 % 2]
    flags = ["--positional", positional, "--activation", activation, "--attention", attention, bias]
    flags += ["--tie-weights" if tie == "tied" else "--no-tie-weights"]
    run_dir = train(corpora, f"{tokenizer}-{i}", *flags)
    out = tmp_path / "hf"
    export_run(run_dir, "best", "hf", out)
    run = load_run(run_dir)

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    assert config["activation_function"] == activation and config["n_positions"] == 96
    assert model.config.tie_word_embeddings is False  # the head bias lives in lm_head, so never tied

    texts = ["The quick brown fox", "Café au lait costs 3 € — naïve? 🙂", "A small model learns"]
    for text in texts:
        assert tok(text)["input_ids"] == run.tokenizer.encode(text)
        assert tok.decode(run.tokenizer.encode(text)) == text

    batch = torch.tensor(prompts(run.tokenizer, 24))
    with torch.no_grad():
        ours, _ = run.model(batch)
        theirs = model(batch).logits
    assert theirs.shape == ours.shape
    assert (theirs - ours).abs().max().item() < TOLERANCE

    prompt = run.tokenizer.encode("The quick ")
    expected = greedy(run.model, prompt, 60)
    with torch.no_grad():
        got = model.generate(torch.tensor([prompt]), max_new_tokens=60, do_sample=False, attention_mask=None)
    assert got[0].tolist() == expected
    assert tok.decode(got[0][len(prompt) :]) == run.tokenizer.decode(expected[len(prompt) :])


def test_modern_switches_gpt2_can_hold_export_exactly_and_a_biasless_head_stays_tied(corpora, tmp_path):
    flags = ["--activation", "relu2", "--no-ffn-bias", "--no-head-bias", "--tie-weights", "--attention", "auto"]
    run_dir = train(corpora, "char-modern", *flags)
    out = tmp_path / "hf"
    export_run(run_dir, "best", "hf", out)
    run, model = load_run(run_dir), AutoModelForCausalLM.from_pretrained(out)
    assert model.config.activation_function == "relu2" and model.config.tie_word_embeddings is True
    batch = torch.tensor(prompts(run.tokenizer, 24))
    with torch.no_grad():
        assert (model(batch).logits - run.model(batch)[0]).abs().max().item() < TOLERANCE


def test_folding_the_head_bias_is_exact_for_any_layernorm():
    """Odd LayerNorm scales (negative, tiny, exactly zero) and a large head bias still give the same logits."""
    torch.manual_seed(0)
    for zero in (False, True):
        model = GPT(ModelConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, block_size=8, tie_weights=True)).eval()
        with torch.no_grad():
            model.ln_f.weight.copy_(torch.randn(16) * 2)
            model.ln_f.weight[3] = 1e-3
            if zero:
                model.ln_f.weight[5] = 0.0
            model.ln_f.bias.copy_(torch.randn(16))
            model.head.bias.copy_(torch.randn(50) * 5)
        w = gpt2_weights(model)
        x = torch.randint(0, 50, (2, 8))
        with torch.no_grad():
            h = model.blocks[0](model.tok_emb(x) + model.pos_emb(torch.arange(8)))
            expected, _ = model(x)
            n = torch.nn.functional.layer_norm(h, (16,))
            got = (n * w.ln_f_weight + w.ln_f_bias) @ w.lm_head.T
        assert not w.tied and (got - expected).abs().max().item() < 1e-4
    W, b, g, beta = torch.randn(7, 5), torch.zeros(7), torch.randn(5), torch.randn(5)
    assert fold_head_bias(W, b, g, beta)[0].equal(W)  # no bias, nothing to fold


# --- fine-tuned runs: the chat template ------------------------------------------------------------

CHATS = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What jumps?"},
            {"role": "assistant", "content": "The quick brown fox."},
        ]
    },
    {"prompt": "What is lazy?", "response": "The dog."},
    {"prompt": "Who learns?", "response": "A small model learns the shape of words."},
]
FT_FLAGS = ["--max-iters", "6", "--eval-interval", "3", "--batch-size", "2", "--eval-iters", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def chat_run(corpora):
    base = train(corpora, "char-chat-base")
    data = corpora / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CHATS), encoding="utf-8")
    out = corpora / "runs" / "char-chat"
    assert main(["finetune", "--from", str(base), "--data", str(data), "--out", str(out), *FT_FLAGS]) == 0
    return out


def test_fine_tuned_run_chats_through_apply_chat_template(chat_run, tmp_path):
    out = tmp_path / "hf"
    export_run(chat_run, "last", "hf", out)
    run = load_run(chat_run, "last")
    assert run.tokenizer.added_chars  # "?" is not in the pretraining text: an added character
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    end = run.tokenizer.end_id
    assert tok.convert_tokens_to_ids(END) == end and tok.eos_token == END
    assert [tok.convert_tokens_to_ids(s) for s in SPECIALS] == [run.tokenizer.id(s) for s in SPECIALS]

    for c in CHATS[:1] + [[{"role": "user", "content": "What jumps?"}]]:
        messages = c["messages"] if isinstance(c, dict) else c
        for gen in (False, True):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert text == render_text(messages, add_generation_prompt=gen)
            ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            assert list(ids) == render(run.tokenizer, messages, add_generation_prompt=gen)[0]

    messages = [{"role": "user", "content": "What jumps?"}]
    prompt = render(run.tokenizer, messages, add_generation_prompt=True)[0]
    expected = greedy(run.model, prompt, 30)
    if end in expected[len(prompt) :]:
        expected = expected[: expected.index(end, len(prompt)) + 1]
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    got = model.generate(**inputs, max_new_tokens=30, do_sample=False, eos_token_id=end)
    assert got[0].tolist() == expected

    # The same, in a Python that cannot import bricklm at all: the folder stands on its own.
    script = (
        "import sys; sys.modules['bricklm'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({str(out)!r}); m = AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
        "x = tok.apply_chat_template([{'role': 'user', 'content': 'What jumps?'}], add_generation_prompt=True,"
        " return_tensors='pt', return_dict=True)\n"
        "y = m.generate(**x, max_new_tokens=30, do_sample=False, eos_token_id=tok.eos_token_id)\n"
        "print(y[0].tolist())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


# --- GGUF ------------------------------------------------------------------------------------------


def read_gguf(path: Path):
    reader = gguf.GGUFReader(path)

    def field(name):
        f = reader.fields[name]
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            if f.types[-1] == gguf.GGUFValueType.STRING:
                return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            return [int(f.parts[i][0]) for i in f.data]
        value = f.parts[f.data[0]]
        return bytes(value).decode("utf-8") if f.types[0] == gguf.GGUFValueType.STRING else value[0]

    return reader, field


def llama_cpp_bpe(tokens: list[str], merges: list[str], text: str) -> list[int]:
    """llama.cpp's byte-level BPE for a vocabulary whose merges never cross characters: lowest rank first."""
    alphabet, rank = byte_alphabet(), {tuple(m.split(" ")): r for r, m in enumerate(merges)}
    ids = {t: i for i, t in enumerate(tokens)}
    symbols = [alphabet[b] for b in text.encode("utf-8")]
    while True:
        pairs = [(rank.get((a, b), len(rank)), k) for k, (a, b) in enumerate(itertools.pairwise(symbols))]
        best, k = min(pairs, default=(len(rank), -1))
        if best == len(rank):
            return [ids[s] for s in symbols]
        symbols[k : k + 2] = [symbols[k] + symbols[k + 1]]


def test_gguf_reads_back_with_architecture_shapes_and_vocabulary(chat_run, corpora, tmp_path):
    run = load_run(chat_run, "last")
    path = tmp_path / "chat.gguf"
    export_run(chat_run, "last", "gguf", path)
    reader, field = read_gguf(path)
    cfg, tok = run.model_cfg, run.tokenizer
    V, C = cfg.vocab_size, cfg.n_embd
    assert field("general.architecture") == "gpt2" and field("tokenizer.ggml.model") == "gpt2"
    assert field("gpt2.context_length") == cfg.block_size and field("gpt2.block_count") == cfg.n_layer
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}  # GGUF lists dims reversed
    assert shapes["token_embd.weight"] == (V, C) and shapes["output.weight"] == (V, C)
    assert shapes["position_embd.weight"] == (cfg.block_size, C)
    assert shapes["blk.1.attn_qkv.weight"] == (3 * C, C) and shapes["blk.1.ffn_down.weight"] == (C, 4 * C)
    assert len(shapes) == 2 + 12 * cfg.n_layer + 3

    tokens, types, merges = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type"), []
    merges = field("tokenizer.ggml.merges")
    assert len(tokens) == V and field("tokenizer.ggml.eos_token_id") == tok.end_id
    assert tokens[tok.base.vocab_size : tok.base.vocab_size + 4] == list(SPECIALS)
    assert types.count(gguf.TokenType.CONTROL) == 4
    to_byte = {c: b for b, c in byte_alphabet().items()}
    pieces = [bytes(to_byte[c] for c in t).decode("utf-8") if t not in SPECIALS else t for t in tokens]
    assert pieces == [tok.decode([i]) for i in range(V)]  # every id is the same piece
    for text in (TEXT, "Café au lait costs 3 € — naïve? 🙂"):
        assert llama_cpp_bpe(tokens, merges, text) == tok.encode(text)
    assert field("tokenizer.chat_template").startswith("{%- for message in messages")

    bpe_run = train(corpora, "bpe-gguf")
    export_run(bpe_run, "best", "gguf", tmp_path / "bpe.gguf")
    _, field = read_gguf(tmp_path / "bpe.gguf")
    hf = json.loads(load_run(bpe_run).tokenizer.hf.to_str())["model"]
    tokens = field("tokenizer.ggml.tokens")
    assert tokens[:-1] == sorted(hf["vocab"], key=hf["vocab"].get) and tokens[-1] == "<|endoftext|>"
    assert field("tokenizer.ggml.merges") == [m if isinstance(m, str) else " ".join(m) for m in hf["merges"]]
    assert field("tokenizer.ggml.eos_token_id") == len(tokens) - 1  # the appended, never-predicted end token


# --- refusals and the destination ------------------------------------------------------------------

REFUSED = [
    (["--residual", "off"], 'residual = "off"'),
    (["--residual", "bug"], 'residual = "bug"'),
    (["--norm", "none"], "norm = none"),
    (["--norm", "rmsnorm"], "norm = rmsnorm"),
    (["--attention", "none"], "attention = none"),
    (["--positional", "rope"], "positional = rope"),
    (["--qk-norm"], "qk_norm = true"),
]


@pytest.mark.parametrize("flags, switch", REFUSED, ids=[s for _, s in REFUSED])
def test_unexportable_switches_are_one_line_and_leave_path_alone(corpora, tmp_path, capsys, flags, switch):
    name = "char-refused-" + "".join(c if c.isalnum() else "-" for c in switch)
    run = train(corpora, name, "--max-iters", "2", *flags)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("the user's file")
    for fmt, out in (("hf", tmp_path / "new"), ("gguf", tmp_path / "new.gguf"), ("hf", kept)):
        capsys.readouterr()
        assert main(["export", "--run", str(run), "--format", fmt, "--out", str(out), "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and switch in err and err.startswith("bricklm: error: cannot export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]


def test_relu_runs_are_refused_for_gguf_only(corpora, tmp_path, capsys):
    run = train(corpora, "char-relu", "--max-iters", "2", "--activation", "relu")
    assert main(["export", "--run", str(run), "--format", "gguf", "--out", str(tmp_path / "m.gguf")]) == 1
    assert "activation = relu" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    assert main(["export", "--run", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0


def test_destination_is_never_destroyed_and_writes_are_atomic(corpora, tmp_path, capsys, monkeypatch):
    run = str(train(corpora, "char-dest", "--max-iters", "2"))
    user = tmp_path / "notes"
    user.mkdir()
    (user / "a.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):  # a folder of someone else's files: refused even with --overwrite
        assert main(["export", "--run", run, "--format", "hf", "--out", str(user), *extra]) == 1
    assert [p.name for p in user.iterdir()] == ["a.txt"]
    (tmp_path / "x.gguf").write_text("not gguf")
    assert main(["export", "--run", run, "--format", "gguf", "--out", str(tmp_path / "x.gguf"), "--overwrite"]) == 1
    assert (tmp_path / "x.gguf").read_text() == "not gguf"

    out = tmp_path / "hf"
    out.mkdir()  # an empty folder is fine
    assert main(["export", "--run", run, "--format", "hf", "--out", str(out)]) == 0
    assert "exported" in capsys.readouterr().out
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only mode
    assert main(["export", "--run", run, "--format", "hf", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    before = (out / "model.safetensors").read_bytes()

    import bricklm.export.run as export_module

    def broken(*args):
        (args[2] / "config.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write_hf", broken)
    assert main(["export", "--run", run, "--format", "hf", "--out", str(out), "--overwrite"]) == 1
    assert "disk full" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before  # the earlier export, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "notes", "x.gguf"]  # no temporary left over
    monkeypatch.undo()
    args = ["export", "--run", run, "--checkpoint", "last", "--format", "hf", "--out", str(out), "--overwrite"]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["bricklm"]["checkpoint"].startswith("step-")


# --- the Llama family (rotary positions, RMSNorm): Arcee, Llama, Qwen3 ---------------------------------

ROPE = ["--positional", "rope", "--norm", "rmsnorm", "--no-head-bias", "--no-ffn-bias"]
# (run name, its flags beyond ROPE, the transformers class): every value of activation, qk_norm, bias, ffn_bias,
# tie_weights and the attention kinds rope allows at least once; the pairs that interact (qk_norm x activation,
# swiglu x ffn_bias, bias x qk_norm) together; char and BPE vocabularies.
FAMILY = [
    ("char-arcee-relu2", ["--activation", "relu2", "--attention", "manual"], "ArceeForCausalLM"),
    ("bpe-arcee-gelu", ["--activation", "gelu", "--bias", "--ffn-bias", "--tie-weights"], "ArceeForCausalLM"),
    ("char-arcee-relu", ["--activation", "relu", "--attention", "auto", "--tie-weights"], "ArceeForCausalLM"),
    ("bpe-llama", ["--activation", "swiglu", "--bias", "--ffn-bias"], "LlamaForCausalLM"),
    ("char-qwen3", ["--activation", "swiglu", "--qk-norm", "--bias", "--tie-weights"], "Qwen3ForCausalLM"),
    ("bpe-qwen3", ["--activation", "swiglu", "--qk-norm", "--attention", "manual"], "Qwen3ForCausalLM"),
]


def check_transformers(run, out: Path, prompt: list[int]) -> None:
    """Logits within TOLERANCE on a batch, and 60 greedy tokens identical, through transformers' stock class."""
    model = AutoModelForCausalLM.from_pretrained(out)
    batch = torch.tensor(prompts(run.tokenizer, 24))
    with torch.no_grad():
        ours, _ = run.model(batch)
        theirs = model(batch).logits
    assert theirs.shape == ours.shape and (theirs - ours).abs().max().item() < TOLERANCE
    expected = greedy(run.model, prompt, 60)
    with torch.no_grad():
        x = torch.tensor([prompt])  # all attended: the pad id is <|end|>, which a chat prompt holds
        got = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=60, do_sample=False, eos_token_id=None
        )
    assert got[0].tolist() == expected


@pytest.mark.parametrize("name, flags, cls", FAMILY, ids=[f[0] for f in FAMILY])
def test_llama_family_runs_in_transformers_stock_classes(corpora, tmp_path, name, flags, cls):
    run_dir = train(corpora, name, *ROPE, *flags)
    out = tmp_path / "hf"
    export_run(run_dir, "best", "hf", out)
    run = load_run(run_dir)
    assert json.loads((out / "config.json").read_text())["architectures"] == [cls]
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("The quick brown fox")["input_ids"] == run.tokenizer.encode("The quick brown fox")
    check_transformers(run, out, run.tokenizer.encode("The quick "))


@pytest.fixture(scope="module")
def qwen3_chat_run(corpora):
    """A Qwen3-shaped base, fine-tuned with LoRA (merged into the weights at the end) on the chats."""
    base = train(corpora, "char-qwen3-chat-base", *ROPE, "--activation", "swiglu", "--qk-norm")
    data = corpora / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CHATS), encoding="utf-8")
    out = corpora / "runs" / "char-qwen3-chat"
    args = ["finetune", "--from", str(base), "--data", str(data), "--out", str(out), "--lora-rank", "4", *FT_FLAGS]
    assert main(args) == 0
    return out


def test_lora_fine_tuned_qwen3_run_chats_in_transformers_and_writes_an_ollama_folder(qwen3_chat_run, tmp_path):
    out = tmp_path / "hf"
    export_run(qwen3_chat_run, "last", "hf", out)
    run = load_run(qwen3_chat_run, "last")
    messages = [{"role": "user", "content": "What jumps?"}]
    prompt = render(run.tokenizer, messages, add_generation_prompt=True)[0]
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == render_text(
        messages, add_generation_prompt=True
    )
    check_transformers(run, out, prompt)

    folder = tmp_path / "ollama"
    lines = []
    assert export_run(qwen3_chat_run, "last", "ollama", folder, gguf_dtype="bfloat16", log=lines.append) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "README.md", "model.gguf"]
    modelfile = (folder / "Modelfile").read_text()
    create = f"ollama create char-qwen3-chat -f {folder / 'Modelfile'}"
    assert create in (folder / "README.md").read_text() and any(create in line for line in lines)
    assert "\nFROM ./model.gguf\n" in modelfile and f'PARAMETER stop "{END}"' in modelfile
    assert "PARAMETER temperature 0.7" in modelfile and "PARAMETER repeat_penalty 1.0" in modelfile
    template = modelfile.split('TEMPLATE """')[1].split('"""')[0]
    assert template == (
        '{{- range .Messages }}{{ if eq .Role "system" }}<|system|>{{ else if eq .Role "user" }}<|user|>'
        '{{ else if eq .Role "assistant" }}<|assistant|>{{ end }}{{ .Content }}<|end|>{{ end }}<|assistant|>'
    )
    reader, field = read_gguf(folder / "model.gguf")
    assert field("general.architecture") == "qwen3" and field("general.name") == "char-qwen3-chat"
    assert field("qwen3.context_length") == run.model_cfg.block_size
    assert field("tokenizer.chat_template").startswith("{%- for message in messages")
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert kinds["blk.0.ffn_gate.weight"] == gguf.GGMLQuantizationType.BF16
    assert kinds["blk.0.attn_q_norm.weight"] == gguf.GGMLQuantizationType.F32  # 1-D stays float32


def test_gguf_llama_family_tensors_and_rope_order(corpora, tmp_path):
    """Arcee's GGUF rotates adjacent pairs (llama.cpp's normal rope): q and k rows are reordered per head; Qwen3's
    is neox (bricklm's own order) and keeps them. Ollama's base-run Modelfile has no template but the prompt."""
    run_dir = train(corpora, "char-arcee-gguf", *ROPE, "--activation", "relu2")
    run = load_run(run_dir)
    export_run(run_dir, "best", "gguf", tmp_path / "a.gguf")
    reader, field = read_gguf(tmp_path / "a.gguf")
    cfg, hs = run.model_cfg, run.model_cfg.head_size
    assert field("general.architecture") == "arcee" and field("arcee.rope.dimension_count") == hs
    assert field("arcee.attention.layer_norm_rms_epsilon") == pytest.approx(torch.finfo(torch.float32).eps)
    tensors = {t.name: torch.tensor(t.data.copy()) for t in reader.tensors}
    ours = run.model.blocks[0].attn.c_attn.weight.detach()[: cfg.n_embd]
    head0 = tensors["blk.0.attn_q.weight"][:hs]
    assert torch.equal(head0[0], ours[0]) and torch.equal(head0[1], ours[hs // 2])  # pair (0, hs/2) now adjacent
    assert tensors["token_embd.weight"].shape[0] == cfg.vocab_size + 1  # the appended <|endoftext|>
    assert not tensors["token_embd.weight"][-1].any() and not tensors["output.weight"][-1].any()

    folder = tmp_path / "ollama"
    export_run(run_dir, "best", "ollama", folder)
    modelfile = (folder / "Modelfile").read_text()
    assert 'TEMPLATE """{{ .Prompt }}"""' in modelfile and "PARAMETER stop" not in modelfile
    assert "PARAMETER temperature 0.8" in modelfile and f"PARAMETER num_ctx {cfg.block_size}" in modelfile


def test_float16_is_refused_where_the_runs_activations_overflow_it(corpora, tmp_path, capsys, monkeypatch):
    import bricklm.export.precision as precision

    run_dir = train(corpora, "char-arcee-f16", *ROPE, "--activation", "relu2")
    run = load_run(run_dir)
    seen = []  # the feed-forward's activations, by a hook: the measurement must cover them
    hooks = [b.ffn.act.register_forward_hook(lambda m, i, o: seen.append(o.abs().max())) for b in run.model.blocks]
    peak = precision.float16_peak(run)
    for h in hooks:
        h.remove()
    assert peak >= max(seen) > 0
    out = tmp_path / "m.gguf"
    assert (
        main(["export", "--run", str(run_dir), "--format", "gguf", "--gguf-dtype", "float16", "--out", str(out)]) == 0
    )
    assert "largest value" in capsys.readouterr().out
    kinds = {t.name: t.tensor_type for t in read_gguf(out)[0].tensors}
    assert kinds["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.F16
    monkeypatch.setattr(precision, "FLOAT16_MAX", float(peak) / 2)  # as if the run's activations were twice f16's
    args = ["export", "--run", str(run_dir), "--format", "ollama", "--gguf-dtype", "float16", "--out"]
    assert main([*args, str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write float16" in err and "bfloat16" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]
    assert main(["export", "--run", str(run_dir), "--format", "hf", "--gguf-dtype", "float16", "--out", "x"]) == 1


FAMILY_REFUSED = [
    (["--activation", "relu2", "--qk-norm"], "hf", "qk_norm = true with activation = relu2"),  # the 10-minute recipe's
    (["--activation", "gelu"], "gguf", "activation = gelu (llama.cpp's Arcee is ReLU² only"),
    (["--activation", "swiglu", "--qk-norm", "--ffn-bias"], "hf", "ffn_bias = true"),
    (["--activation", "relu2", "--head-bias"], "gguf", "head_bias = true"),
    (["--activation", "relu2", "--bias"], "gguf", "bias = true (llama.cpp's arcee"),
]


@pytest.mark.parametrize("flags, fmt, switch", FAMILY_REFUSED, ids=[s for _, _, s in FAMILY_REFUSED])
def test_llama_family_refusals_name_the_switch(corpora, tmp_path, capsys, flags, fmt, switch):
    name = "char-family-refused-" + "".join(c if c.isalnum() else "-" for c in switch)
    run = train(corpora, name, "--max-iters", "2", *ROPE, *flags)
    out = tmp_path / ("new.gguf" if fmt == "gguf" else "new")
    for f in (fmt, "ollama") if fmt == "gguf" else (fmt,):
        capsys.readouterr()
        assert main(["export", "--run", str(run), "--format", f, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and switch in err and "docs/export.md" in err
    assert not any(tmp_path.iterdir())


def test_an_ollama_folder_is_replaced_only_when_bricklm_wrote_it(corpora, tmp_path):
    run = str(train(corpora, "char-ollama-dest", "--max-iters", "2"))
    out = tmp_path / "o"
    assert main(["export", "--run", run, "--format", "ollama", "--out", str(out)]) == 0
    assert main(["export", "--run", run, "--format", "ollama", "--out", str(out)]) == 1  # needs --overwrite
    assert main(["export", "--run", run, "--format", "ollama", "--out", str(out), "--overwrite"]) == 0
    assert read_gguf(out / "model.gguf")[1]("general.architecture") == "gpt2"
    (out / "Modelfile").write_text("FROM llama3\n")  # now someone else's Modelfile
    assert main(["export", "--run", run, "--format", "ollama", "--out", str(out), "--overwrite"]) == 1
    assert (out / "Modelfile").read_text() == "FROM llama3\n"


@pytest.mark.parametrize("recipe", ["speedrun-cpu", "best-10min-cpu", "shakespeare-cpu"])
def test_the_cpu_recipes_export_to_both_runtimes_as_qwen3(recipe):
    # docs/records.md, "Portability": SwiGLU cost nothing measurable, so the recipes' blocks are Qwen3's.
    model_cfg, _ = load_config(Path(__file__).parents[2] / "configs" / f"{recipe}.toml")
    assert export_architecture(model_cfg, recipe, "hf") == export_architecture(model_cfg, recipe, "gguf") == "qwen3"
