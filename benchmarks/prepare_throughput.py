"""`bricklm prepare` throughput (MB/s) and peak memory, char against byte-level BPE, and per kind of source.

    nice -n 19 python benchmarks/prepare_throughput.py            # writes benchmarks/results/prepare_throughput.json
    python benchmarks/prepare_throughput.py --mb 50 --vocab-size 8000
    python benchmarks/prepare_throughput.py --mb 50 --corpora wxr,zip --tokenizers char   # the exports, 50 MB each

Corpora: generated sentences (--mb megabytes over 200 .txt files, always available); the blog's
text (--corpus, default ../shared/data/bdunagan.com.txt, when present); a generated WordPress
export ("wxr": one WXR file of --mb megabytes, block-editor posts with drafts and revisions
among them, streamed by the reader); and a zip of --mb megabytes of Markdown ("zip", read in
place member by member). Each prepare runs in a fresh process; "peak_growth_mb" is how far its
peak RSS rose above the level after imports, the memory prepare itself held. "input_mb" is the
size on disk (for the zip, compressed; "inflated_mb" beside it). The machine's load average is
recorded beside the numbers.
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
import zipfile
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


def sentences(seed: int = 0) -> tuple[random.Random, list[str]]:
    """A seeded generator and a pool of generated sentences to draw text from (fast: lines are drawn, not made)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzéü"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 9))) for _ in range(5000)]
    return rng, [" ".join(rng.choices(words, k=rng.randint(4, 16))).capitalize() + "." for _ in range(20000)]


def generate(root: Path, mb: float, files: int = 200, seed: int = 0) -> None:
    rng, lines = sentences(seed)
    root.mkdir(parents=True)
    per_file = int(mb * 2**20) // files
    for i in range(files):
        (root / f"doc{i:04d}.txt").write_text("\n".join(rng.choices(lines, k=per_file // 60)) + "\n")


WXR_HEAD = """<?xml version="1.0" encoding="UTF-8" ?>
<rss version="2.0" xmlns:excerpt="http://wordpress.org/export/1.2/excerpt/"
\txmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:wfw="http://wellformedweb.org/CommentAPI/"
\txmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:wp="http://wordpress.org/export/1.2/">
<channel>
\t<title>Generated</title>
\t<wp:wxr_version>1.2</wp:wxr_version>
"""
WXR_ITEM = """\t<item>
\t\t<title><![CDATA[{title}]]></title>
\t\t<dc:creator><![CDATA[admin]]></dc:creator>
\t\t<content:encoded><![CDATA[{content}]]></content:encoded>
\t\t<excerpt:encoded><![CDATA[]]></excerpt:encoded>
\t\t<wp:post_id>{id}</wp:post_id>
\t\t<wp:post_name><![CDATA[post-{id}]]></wp:post_name>
\t\t<wp:status><![CDATA[{status}]]></wp:status>
\t\t<wp:post_type><![CDATA[{type}]]></wp:post_type>
\t</item>
"""


def generate_wxr(path: Path, mb: float, seed: int = 0) -> None:
    """A WordPress export of about mb megabytes: block-editor posts, one in ten a draft and one a revision."""
    rng, lines = sentences(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write(WXR_HEAD)
        i = 0
        while f.tell() < mb * 2**20:
            paragraphs = [" ".join(rng.choices(lines, k=8)) for _ in range(8)]
            content = "\n\n".join(f"<!-- wp:paragraph -->\n<p>{p}</p>\n<!-- /wp:paragraph -->" for p in paragraphs)
            status, kind = {8: ("draft", "post"), 9: ("inherit", "revision")}.get(i % 10, ("publish", "post"))
            f.write(WXR_ITEM.format(title=f"Post {i}", content=content, id=i, status=status, type=kind))
            i += 1
        f.write("</channel>\n</rss>\n")


def generate_zip(path: Path, mb: float, files: int = 2000, seed: int = 0) -> None:
    """A zip of about mb megabytes (inflated) of Markdown notes, as a vault or a site exported as a zip."""
    rng, lines = sentences(seed)
    per_file = int(mb * 2**20) // files
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(files):
            body = "\n\n".join(" ".join(rng.choices(lines, k=6)) for _ in range(max(1, per_file // 600)))
            zf.writestr(f"notes/{i // 100:02d}/note{i:04d}.md", f"---\ntitle: Note {i}\n---\n# Note {i}\n\n{body}\n")


def measure(src: Path, out: Path, tokenizer: str, vocab_size: int) -> dict:
    size = sum(p.stat().st_size for p in ([src] if src.is_file() else src.rglob("*")) if p.is_file())
    inflated = {}
    if src.suffix == ".zip":
        with zipfile.ZipFile(src) as zf:
            inflated = {"inflated_mb": round(sum(i.file_size for i in zf.infolist()) / 2**20, 2)}
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
        **inflated,
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
    p.add_argument("--corpora", default="generated,blog,wxr,zip", help="which corpora, comma-separated")
    p.add_argument("--tokenizers", default="char,bpe", help="which tokenizers, comma-separated")
    args = p.parse_args()
    wanted = set(args.corpora.split(","))
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpora = {}
        if "generated" in wanted:
            generate(tmp / "generated", args.mb)
            corpora["generated"] = tmp / "generated"
        if "blog" in wanted and args.corpus.is_file():
            corpora["blog"] = args.corpus
        if "wxr" in wanted:
            generate_wxr(tmp / "export.xml", args.mb)
            corpora["wxr"] = tmp / "export.xml"
        if "zip" in wanted:
            generate_zip(tmp / "notes.zip", args.mb)
            corpora["zip"] = tmp / "notes.zip"
        for name, src in corpora.items():
            for tok in args.tokenizers.split(","):
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
