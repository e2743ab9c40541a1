"""`bricklm prepare` throughput (MB/s) and peak memory, char against byte-level BPE.

    nice -n 19 python benchmarks/prepare_throughput.py            # writes benchmarks/results/prepare_throughput.json
    python benchmarks/prepare_throughput.py --mb 50 --vocab-size 8000

Two corpora: generated sentences (--mb megabytes over 200 .txt files, always available) and
the blog's text (--corpus, default ../shared/data/bdunagan.com.txt, when present). Each prepare runs in a
fresh process; "peak_growth_mb" is how far its peak RSS rose above the level after imports,
the memory prepare itself held. The machine's load average is recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO as ROOT
from common import machine, shared_data

MEASURE = """
import json, resource, sys, time
from bricklm.config import PrepareConfig
from bricklm.text.prepare import prepare
import bricklm.text.tokenizer
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
cfg = PrepareConfig(tokenizer=sys.argv[3], vocab_size=int(sys.argv[4]))
r = prepare([sys.argv[1]], sys.argv[2], cfg, log=lambda *a: None)
seconds = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "characters": r.characters, "tokens": r.train_tokens + r.val_tokens,
                  "vocab_size": r.vocab_size, "peak_growth_mb": (after - before) / 1024}))
"""


def generate(root: Path, mb: float, files: int = 200, seed: int = 0) -> None:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzéü"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 9))) for _ in range(5000)]
    lines = [" ".join(rng.choices(words, k=rng.randint(4, 16))).capitalize() + "." for _ in range(20000)]
    root.mkdir(parents=True)
    per_file = int(mb * 2**20) // files
    for i in range(files):
        (root / f"doc{i:04d}.txt").write_text("\n".join(rng.choices(lines, k=per_file // 60)) + "\n")


def measure(src: Path, out: Path, tokenizer: str, vocab_size: int) -> dict:
    size = sum(p.stat().st_size for p in ([src] if src.is_file() else src.rglob("*")) if p.is_file())
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(src), str(out), tokenizer, str(vocab_size)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    r = json.loads(done.stdout)
    return {
        "input_mb": round(size / 2**20, 2),
        "seconds": round(r["seconds"], 2),
        "mb_per_s": round(size / 2**20 / r["seconds"], 2),
        "tokens": r["tokens"],
        "chars_per_token": round(r["characters"] / r["tokens"], 2),
        "vocab_size": r["vocab_size"],
        "peak_growth_mb": round(r["peak_growth_mb"], 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=10, help="size of the generated corpus")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/prepare_throughput.json"))
    p.add_argument(
        "--corpus",
        type=Path,
        default=shared_data("bdunagan.com.txt"),
        help="a real text to measure beside the generated one, when it exists",
    )
    args = p.parse_args()
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "generated", args.mb)
        corpora = {"generated": tmp / "generated"}
        if args.corpus.is_file():
            corpora["blog"] = args.corpus
        for name, src in corpora.items():
            for tok in ("char", "bpe"):
                results[f"{name}/{tok}"] = measure(src, tmp / f"out-{name}-{tok}", tok, args.vocab_size)
                print(name, tok, results[f"{name}/{tok}"], flush=True)
    result = {
        "command": "python benchmarks/prepare_throughput.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
