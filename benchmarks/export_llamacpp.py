"""llama.cpp against bricklm on exported GGUF files: token ids, logits and greedy text.

    pip install llama-cpp-python     # builds llama.cpp from source (about 20 minutes on 2 cores)
    PYTHONPATH=src python benchmarks/export_llamacpp.py [--iters 150] [--workdir /tmp/bricklm-export-bench]
    PYTHONPATH=src python benchmarks/export_llamacpp.py --recipes     # the shipped CPU recipes instead

Trains (or reuses, from export_hf.py's work folder) one small run per GGUF-exportable combination
(GPT-2: learned / sinusoidal positions × tied / untied × char / BPE, all GELU: llama.cpp's GPT-2 has
no ReLU; the Llama family, rotary positions and RMSNorm: Arcee (ReLU², tied / untied × char / BPE),
Llama (SwiGLU, with and without biases), Qwen3 (SwiGLU + QK-norm, char / BPE, tied / untied)) plus a
GPT-2 run and a Qwen3 run fine-tuned on the built-in Q&A set, exports each with `--format gguf`,
loads it with llama-cpp-python and records in benchmarks/results/export_llamacpp.json (with --recipes:
configs/speedrun-cpu.toml, best-10min-cpu.toml and shakespeare-cpu.toml as they ship, each trained for
--iters steps on the character corpus, in benchmarks/results/export_llamacpp_recipes.json):

  same_ids    llama.cpp's tokenizer gives bricklm's ids for 20,000 held-out characters (and, for the
              chat run, for a rendered conversation with its special tokens)
  max_abs     largest |llama.cpp logit − bricklm logit| over 4 held-out windows of block_size tokens,
              llama.cpp as it runs by default (its KV cache holds keys and values in float16)
  mean_abs    the mean of the same
  top1        share of those positions where both pick the same most likely token
  greedy_60   whether 60 greedy tokens after a prompt are the same ids (llama.cpp with its KV cache); fewer
              where the window is shorter (greedy_tokens: block_size − 20 for a 64-token window)
  f32_cache   max_abs again with llama.cpp's KV cache in float32 (type_k = type_v = F32)
  emulated    (GPT-2 runs) f32_cache again against bricklm with its GELU swapped for llama.cpp's: the tanh
              approximation, read through float16 as ggml's lookup table does. What is left is
              float32 rounding, so this column says whether the exported weights are exact.
  floor       for scale: the GELU-swapped bricklm model in float32 against itself in float64. Float16
              rounding inside GELU turns float32's tiny rounding into steps of a float16 unit, so
              `emulated` can be no smaller than this.

The first columns differ from zero for two reasons that are llama.cpp's, not the export's: the
float16 KV cache, and GELU computed as above instead of bricklm's exact (erf) GELU.
Without llama-cpp-python this script says so and exits 1, measuring nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
GGUF_COMBOS = [(p, t, k) for p in ("learned", "sinusoidal") for t in ("tied", "untied") for k in ("char", "bpe")]
ROPE = ["--positional", "rope", "--norm", "rmsnorm", "--no-head-bias", "--no-ffn-bias"]
FAMILY = [  # (name, corpus, flags beyond ROPE): the Llama family's GGUF-exportable combinations
    ("arcee-relu2-untied-char", "char", ["--activation", "relu2"]),
    ("arcee-relu2-tied-bpe", "bpe", ["--activation", "relu2", "--tie-weights", "--attention", "manual"]),
    ("llama-swiglu-untied-char", "char", ["--activation", "swiglu"]),
    ("llama-swiglu-bias-tied-bpe", "bpe", ["--activation", "swiglu", "--bias", "--ffn-bias", "--tie-weights"]),
    ("qwen3-swiglu-qknorm-untied-char", "char", ["--activation", "swiglu", "--qk-norm"]),
    ("qwen3-swiglu-qknorm-tied-bpe", "bpe", ["--activation", "swiglu", "--qk-norm", "--tie-weights"]),
]


def llama_cpp_or_exit():
    try:
        import llama_cpp
    except ImportError as e:
        sys.exit(
            f"llama-cpp-python is not installed here ({e}); nothing was measured.\n"
            "Install it with `pip install llama-cpp-python` (it compiles llama.cpp from source) and run again."
        )
    return llama_cpp


def scores(llm, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits for every position of ids, evaluated from an empty cache: (T, n_vocab)."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


def greedy_llama(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    ids = list(ids)
    for _ in range(n):
        ids.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([ids[-1]])
    return ids


class LlamaCppGelu(torch.nn.Module):
    """ggml's CPU GELU: tanh approximation of the input rounded to float16, result rounded to float16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.gelu(x.half().float(), approximate="tanh").half().float()
        return torch.where(x <= -10, 0.0, torch.where(x >= 10, x, y))


def max_abs(llm, model, ids: list[int], block: int, vocab: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """|llama.cpp − bricklm| at every position of 4 windows, and whether their top tokens agree."""
    from export_hf import windows

    diffs, top1 = [], []
    for window in windows(ids, block, 4).tolist():
        theirs = scores(llm, window)
        with torch.no_grad():
            ours = model(torch.tensor([window]))[0][0].double().numpy()
        appended = theirs[:, vocab:]  # <|endoftext|>: -10000 in GPT-2's layout, 0 in the Llama family's (gguf.py)
        assert np.all((appended < -9000) | (np.abs(appended) < 1e-3)), "the appended token's logit is not constant"
        diffs.append(np.abs(theirs[:, :vocab] - ours))
        top1.append(theirs[:, :vocab].argmax(-1) == ours.argmax(-1))
    return np.concatenate(diffs), top1


def measure(llama_cpp, run_dir: Path, path: Path, text: str, chat_messages=None) -> dict:
    from bricklm.export import export_run
    from bricklm.storage.runs import load_run
    from export_hf import greedy_bricklm, windows

    export_run(run_dir, "best", "gguf", path, overwrite=True)
    run = load_run(run_dir)
    block, vocab = run.model_cfg.block_size, run.model_cfg.vocab_size
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=max(block, 256), logits_all=True, n_threads=1, verbose=False)
    ids = run.tokenizer.encode(text)
    same_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == ids
    if chat_messages is not None:
        from bricklm.finetune.conversations import render, render_text

        rendered = render(run.tokenizer, chat_messages, add_generation_prompt=True)[0]
        same_ids &= llm.tokenize(render_text(chat_messages, True).encode("utf-8"), False, True) == rendered
    diff, top1 = max_abs(llm, run.model, ids, block, vocab)
    prompt = ids[:20]
    n = min(60, block - len(prompt))  # inside the trained window: beyond it bricklm slides, llama.cpp does not
    greedy = greedy_llama(llm, prompt, n) == greedy_bricklm(run.model, prompt, n)
    f32 = llama_cpp.GGML_TYPE_F32
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=max(block, 256), logits_all=True, n_threads=1, verbose=False, type_k=f32, type_v=f32
    )
    f32_cache = max_abs(llm, run.model, ids, block, vocab)[0].max()
    emulated = None
    if run.model_cfg.activation == "gelu":  # GPT-2's GELU is llama.cpp's tanh approximation
        for b in run.model.blocks:
            b.ffn.act = LlamaCppGelu()
        emulated = max_abs(llm, run.model, ids, block, vocab)[0].max()
    batch = windows(ids, block, 4)
    with torch.no_grad():
        floor = (run.model(batch)[0].double() - run.model.double()(batch)[0]).abs().max()
    return {
        "same_ids": bool(same_ids),
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "top1": float(np.concatenate(top1).mean()),
        "greedy_60": greedy,
        "greedy_tokens": n,
        "f32_cache": float(f32_cache),
        "emulated": None if emulated is None else float(emulated),
        "floor": float(floor),
        "file_mb": round(path.stat().st_size / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bricklm-export-bench"))
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/export_llamacpp[_recipes].json")
    parser.add_argument("--recipes", action="store_true", help="the shipped CPU recipes, not the switch combinations")
    args = parser.parse_args()
    args.out = args.out or ROOT / f"benchmarks/results/export_llamacpp{'_recipes' * args.recipes}.json"
    llama_cpp = llama_cpp_or_exit()
    sys.path.insert(0, str(Path(__file__).parent))
    from export_hf import prepare_corpora

    workdir = prepare_corpora(args.workdir)
    rows = recipe_rows(llama_cpp, workdir, args.iters) if args.recipes else combination_rows(llama_cpp, workdir, args)
    command = f"PYTHONPATH=src python benchmarks/export_llamacpp.py --iters {args.iters}{' --recipes' * args.recipes}"
    result = {
        "command": command,
        "llama_cpp_python": llama_cpp.__version__,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, llama.cpp on 1 thread",
        "worst_max_abs": max(r["max_abs"] for r in rows),
        "worst_emulated": max((r["emulated"] for r in rows if r["emulated"] is not None), default=None),
        "worst_max_abs_llama_family": max(r["max_abs"] for r in rows if r["emulated"] is None),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    worst = f"worst max_abs {result['worst_max_abs']:.2e} (emulated {result['worst_emulated']})"
    agree = f"ids agree: {all(r['same_ids'] for r in rows)}; greedy agrees: {sum(r['greedy_60'] for r in rows)}"
    print(f"{worst}; {agree}/{len(rows)} -> {args.out}")


def recipe_rows(llama_cpp, workdir: Path, iters: int) -> list[dict]:
    """Each shipped CPU recipe as a user trains it (its shape and switches), for `iters` steps by count, not time."""
    from bricklm.cli import main as bricklm_main
    from export_hf import held_out_text

    rows = []
    for recipe in ("speedrun-cpu", "best-10min-cpu", "shakespeare-cpu"):
        run = workdir / "runs" / f"recipe-{recipe}"
        if not (run / "summary.json").is_file():
            flags = ["--max-iters", str(iters), "--no-schedule-by-time", "--max-seconds", "0", "--eval-interval"]
            flags += [str(iters), "--eval-iters", "2", "--device", "cpu"]
            config = ["--config", str(ROOT / "configs" / f"{recipe}.toml")]
            assert bricklm_main(["train", *config, "--data", str(workdir / "char"), "--out", str(run), *flags]) == 0
        path = workdir / "gguf" / f"recipe-{recipe}.gguf"
        rows.append({"run": f"configs/{recipe}.toml", **measure(llama_cpp, run, path, held_out_text(workdir, "char"))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def combination_rows(llama_cpp, workdir: Path, args) -> list[dict]:
    """Every GGUF-exportable combination of switches, and two fine-tuned chat runs."""
    from bricklm.cli import main as bricklm_main
    from export_hf import COMBOS, held_out_text, train_run

    rows = []
    for positional, tie, kind in GGUF_COMBOS:
        i = COMBOS.index((positional, "gelu", tie, kind))  # the same run export_hf.py trains for this combination
        attention, bias = ("manual", "torch_mha", "sdpa")[i % 3], ("--bias", "--no-bias")[i // 2 % 2]
        flags = [
            "--positional",
            positional,
            "--activation",
            "gelu",
            "--attention",
            attention,
            bias,
            "--tie-weights" if tie == "tied" else "--no-tie-weights",
        ]
        name = f"{positional}-gelu-{tie}-{kind}-{attention}{bias.replace('--', '-')}"
        run = train_run(workdir, name, kind, flags, args.iters)
        rows.append(
            {"run": name, **measure(llama_cpp, run, workdir / "gguf" / f"{name}.gguf", held_out_text(workdir, kind))}
        )
        print(json.dumps(rows[-1]), flush=True)

    for name, kind, flags in FAMILY:
        run = train_run(workdir, name, kind, ROPE + flags, args.iters)
        rows.append(
            {"run": name, **measure(llama_cpp, run, workdir / "gguf" / f"{name}.gguf", held_out_text(workdir, kind))}
        )
        print(json.dumps(rows[-1]), flush=True)

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"}]
    for base, chat in (("learned-gelu-untied-char-sdpa-no-bias", "chat"), (FAMILY[4][0], "chat-qwen3")):
        if not (workdir / "runs" / chat / "summary.json").is_file():
            ft = ["--max-iters", "40", "--eval-interval", "40", "--eval-iters", "1", "--batch-size", "8"]
            args_ft = ["finetune", "--from", str(workdir / "runs" / base), "--out", str(workdir / "runs" / chat)]
            assert bricklm_main([*args_ft, *ft, "--device", "cpu"]) == 0
        text = held_out_text(workdir, "char")
        path = workdir / "gguf" / f"{chat}.gguf"
        rows.append(
            {
                "run": f"{chat} (fine-tuned, built-in Q&A)",
                **measure(llama_cpp, workdir / "runs" / chat, path, text, messages),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
