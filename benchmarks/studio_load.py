"""The load test behind docs/studio.md: many clients streaming completions from `bricklm studio` at once.

    python benchmarks/studio_load.py                     # 50 clients x 10 rounds; about a minute on 2 cores
    python benchmarks/studio_load.py --json benchmarks/results/studio_load.json

It trains a run of the default shape (4 layers, n_embd 128, 4 heads, block 128; ~0.8M parameters)
for one step on a small made-up text (speed doesn't depend on training), starts `bricklm studio`
on a free 127.0.0.1 port as a subprocess, loads the model with one request, then sends --rounds
rounds of --clients concurrent streaming /v1/completions requests of --max-tokens tokens each.
Per request: time to the first token, tokens received, whether it ended with [DONE]. Per round:
the server's resident memory (Linux /proc) after it. Everything stops by itself: each request has
a timeout and the whole run a deadline, and the server is stopped at the end.

Times depend on the machine and what else runs on it: the JSON records the CPU (lscpu), the torch
version and the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TEXT = (
    "The quick brown fox jumps over the lazy dog. A small model learns the shape of words.\n"
    "Training a tiny transformer on a laptop is a fine way to learn what every block does.\n"
) * 200
MODEL_FLAGS = [
    "--n-layer",
    "4",
    "--n-head",
    "4",
    "--n-embd",
    "128",
    "--block-size",
    "128",
    "--batch-size",
    "8",
    "--max-iters",
    "1",
    "--eval-interval",
    "1",
    "--eval-iters",
    "1",
    "--sample-chars",
    "0",
]
DEADLINE_S = 600  # the whole benchmark, whatever happens


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def make_run(root: Path) -> tuple[Path, int]:
    """A runs folder holding one run, "small", and its parameter count."""
    posts = root / "posts"
    posts.mkdir()
    (posts / "text.md").write_text(TEXT)
    run([sys.executable, "-m", "bricklm", "prepare", str(posts), "--out", str(root / "corpus")])
    run(
        [
            sys.executable,
            "-m",
            "bricklm",
            "train",
            "--data",
            str(root / "corpus"),
            "--out",
            str(root / "runs" / "small"),
            *MODEL_FLAGS,
        ]
    )
    return root / "runs", json.loads((root / "runs" / "small" / "summary.json").read_text())["parameters"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def one(client: httpx.AsyncClient, max_tokens: int, seed: int) -> dict:
    """One streaming completion: time to first token, tokens, whole or not."""
    body = {
        "model": "small",
        "prompt": "The ",
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": seed,
        "stream": True,
    }
    t0 = time.perf_counter()
    first, tokens, done, error = None, 0, False, None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                text = json.loads(line[6:])["choices"][0]["text"]
                if text:
                    tokens += 1  # one character, one token
                    first = first or time.perf_counter()
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    end = time.perf_counter()
    return {
        "ttft_s": (first - t0) if first else None,
        "tokens": tokens,
        "done": done,
        "error": error,
        "seconds": end - t0,
        "stream_tok_s": tokens / (end - first) if first and end > first else None,
    }


async def round_of(url: str, clients: int, max_tokens: int, offset: int) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120.0), limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(client, max_tokens, offset + i) for i in range(clients)))
        return results, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def machine() -> dict:
    import torch

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if sys.platform == "linux" else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), platform.processor()
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--json", metavar="FILE", help="write the results here")
    args = p.parse_args()
    deadline = time.monotonic() + DEADLINE_S
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        runs, n_params = make_run(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "bricklm", "studio", "--runs", str(runs), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            while True:
                try:
                    httpx.get(url + "/health", timeout=2)
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the server did not start: {server.stderr.read().decode()}") from None
                    time.sleep(0.2)
            httpx.post(url + "/v1/completions", json={"model": "small", "max_tokens": 1}, timeout=60)  # load it
            rss = [rss_mib(server.pid)]
            rounds = []
            for k in range(args.rounds):
                if time.monotonic() > deadline:
                    break
                results, wall = asyncio.run(round_of(url, args.clients, args.max_tokens, k * args.clients))
                rss.append(rss_mib(server.pid))
                rounds.append((results, wall))
                ok = [r for r in results if not r.get("error") and r["done"] and r["tokens"] == args.max_tokens]
                print(f"round {k + 1}: {len(ok)}/{len(results)} whole, {wall:.1f} s, server RSS {rss[-1]:.0f} MiB")
            health = httpx.get(url + "/health", timeout=10).json()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    everything = [r for results, _ in rounds for r in results]
    failed = [r for r in everything if r.get("error") or not r["done"] or r["tokens"] != args.max_tokens]
    ttft = [r["ttft_s"] for r in everything if r.get("ttft_s") is not None]
    per_stream = [r["stream_tok_s"] for r in everything if r.get("stream_tok_s")]
    total_tokens = sum(r.get("tokens", 0) for r in everything)
    result = {
        "benchmark": "studio_load",
        "command": "python benchmarks/studio_load.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "model": f"the default shape (4 layers, n_embd 128, 4 heads, block 128), {n_params:,} parameters "
        "with this text's character vocabulary",
        "server": "bricklm studio defaults: 4 generation threads taking turns a token at a time, up to 68 "
        "generations, torch threads = max(1, cores // 4)",
        "clients": args.clients,
        "rounds": len(rounds),
        "max_tokens": args.max_tokens,
        "requests": len(everything),
        "failed_or_lost": len(failed),
        "failures": [r.get("error") or f"{r['tokens']} tokens, done={r['done']}" for r in failed][:10],
        "ttft_p50_s": round(pct(ttft, 0.5), 3),
        "ttft_p95_s": round(pct(ttft, 0.95), 3),
        "ttft_max_s": round(max(ttft), 3),
        "tokens_per_s_per_stream_p50": round(statistics.median(per_stream), 1),
        "tokens_per_s_all_streams": round(total_tokens / sum(wall for _, wall in rounds), 1),
        "round_wall_s": [round(wall, 2) for _, wall in rounds],
        "server_rss_mib": {
            "after_model_load": round(rss[0], 1),
            "after_each_round": [round(x, 1) for x in rss[1:]],
            "growth_after_first_round": round(rss[-1] - rss[1], 1),
        },
        "server_health_after": health,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
