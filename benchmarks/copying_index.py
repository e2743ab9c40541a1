"""The copying meter's index: build time, peak memory and size on disk, and the time to check a 1,000-character
sample, for generated corpora of 1, 10 and 100 MB (and the blog's text, when ../shared/data has it).

    nice -n 19 python benchmarks/copying_index.py                    # writes benchmarks/results/copying_index.json
    python benchmarks/copying_index.py --sizes 0.2 --out /tmp/c.json   # a quick check that it works

Each corpus is prepared (character tokenizer, documents split) outside the measurement; then a fresh process
builds the index (text/copyindex.py: build_index, which includes the chance measurement on held-out windows)
and checks samples of 1,000 characters: windows of the training text (copied whole), of the held-out text,
and of random words (little copied). "peak_growth_mb" is how far the process's peak RSS rose above the level
after imports: the memory the build held. Times are wall-clock; the machine's load average is recorded
beside them, as the numbers mean nothing on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bricklm.config import PrepareConfig
from bricklm.text.prepare import prepare
from common import REPO as ROOT
from common import machine, shared_data
from prepare_throughput import generate

MEASURE = """
import json, random, resource, statistics, sys, time
from pathlib import Path
from bricklm.text.copyindex import build_index
from bricklm.text.splits import read_meta, split_pieces
corpus, out, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
index = build_index(corpus, out)
build_s = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
meta = read_meta(corpus)
rng = random.Random(0)
def windows(split):
    text = "".join(p.text for p in split_pieces(corpus, meta, split))
    return [text[s : s + 1000] for s in (rng.randrange(max(len(text) - 1000, 1)) for _ in range(count))]
words = sorted(set(windows("train")[0].split()))
kinds = {"training text": windows("train"), "held-out text": windows("val"),
         "random words": [" ".join(rng.choices(words, k=300))[:1000] for _ in range(count)]}
checks = {}
for kind, texts in kinds.items():
    seconds, longest = [], []
    for text in texts:
        t = time.perf_counter()
        longest.append(index.measure(text).longest)
        seconds.append(time.perf_counter() - t)
    checks[kind] = {"samples": len(texts), "ms_mean": 1000 * statistics.fmean(seconds),
                    "ms_max": 1000 * max(seconds), "longest_median": statistics.median(longest)}
size = sum(p.stat().st_size for p in out.iterdir())
print(json.dumps({"build_s": build_s, "peak_growth_mb": (after - before) / 1024, "index_mb": size / 2**20,
                  "text_mb": index.info["bytes"] / 2**20, "chance": index.info["chance"], "checks": checks}))
"""


def measure(corpus: Path, out: Path, samples: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(corpus), str(out), str(samples)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    r = json.loads(done.stdout)
    checks = {k: {n: round(v, 2) if isinstance(v, float) else v for n, v in c.items()} for k, c in r["checks"].items()}
    return {
        "training_text_mb": round(r["text_mb"], 2),
        "build_s": round(r["build_s"], 2),
        "peak_growth_mb": round(r["peak_growth_mb"], 1),
        "index_mb_on_disk": round(r["index_mb"], 1),
        "chance": r["chance"],
        "check_1000_chars": checks,
    }


def prepare_corpus(src: Path, out: Path) -> None:
    prepare([src], out, PrepareConfig(split="documents"), log=lambda *a, **k: None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,10,100", help="generated corpora, in MB (comma-separated)")
    p.add_argument("--samples", type=int, default=20, help="1,000-character samples checked per kind")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/copying_index.json"))
    p.add_argument(
        "--corpus",
        type=Path,
        default=shared_data("bdunagan.com.txt"),
        help="a real text to measure beside the generated ones, when it exists",
    )
    args = p.parse_args()
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {f"generated {mb} MB": float(mb) for mb in args.sizes.split(",") if mb.strip()}
        if args.corpus.is_file():
            sources["blog"] = args.corpus
        for name, source in sources.items():
            key = name.replace(" ", "-")
            if isinstance(source, float):
                generate(tmp / f"src-{key}", source)
                source = tmp / f"src-{key}"
            prepare_corpus(source, tmp / f"corpus-{key}")
            results[name] = measure(tmp / f"corpus-{key}", tmp / f"index-{key}", args.samples)
            print(name, json.dumps(results[name]), flush=True)
    result = {
        "command": "python benchmarks/copying_index.py " + " ".join(sys.argv[1:]),
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
