"""The load test behind docs/studio.md: many clients streaming completions from `bricklm studio` at once,
some of which give up halfway.

    python benchmarks/studio_load.py                     # 50 clients x 10 rounds; about a minute on 2 cores
    python benchmarks/studio_load.py --json benchmarks/results/studio_load.json
    python benchmarks/studio_load.py --clients 200 --give-up 50 --rounds 3   # careless clients among them

It trains a run of the default shape (4 layers, n_embd 128, 4 heads, block 128; ~0.8M parameters)
for one step on a small made-up text (speed doesn't depend on training), starts `bricklm studio` on
a free 127.0.0.1 port as a subprocess, loads the model with one request, then sends --rounds rounds
of --clients concurrent /v1/completions requests of --max-tokens tokens each. Of each round,
--give-up clients ask for --give-up-tokens tokens and leave after --give-up-after seconds without
reading the answer (half of them streaming, half not, as a browser tab closed or a script that timed
out); the others stream to the end. Per request: time to the first token, tokens received, and how
it ended. A request that stays must end in one of: its whole answer and [DONE], or a clean refusal
(a 4xx or 503 with OpenAI's error body); anything else (a cut stream, a 5xx, a missing [DONE])
counts as lost. Per round: the server's resident memory (Linux /proc) after it; before the first
round and after the last (once abandoned generations had a moment to stop): its threads and memory,
and how many generations are still going. Everything stops by itself: each request has a timeout and
the whole run a deadline, and the server is stopped at the end.

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


def proc_status(pid: int) -> dict[str, float]:
    """The server's resident memory (MiB) and threads, from Linux /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"])}


def rss_mib(pid: int) -> float:
    return proc_status(pid)["rss_mib"]


def clean_refusal(status: int, body: bytes) -> bool:
    """A 4xx or 503 with OpenAI's error body: a request the server turned down cleanly."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return (400 <= status < 500 or status == 503) and {"message", "type", "param", "code"} <= set(error)


async def one(client: httpx.AsyncClient, max_tokens: int, seed: int, stream: bool = True) -> dict:
    """One completion: time to first token, tokens, and how it ended ("whole", "refused" or "lost")."""
    body = {
        "model": "small",
        "prompt": "The ",
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": seed,
        "stream": stream,
    }
    t0 = time.perf_counter()
    out = {"ttft_s": None, "tokens": 0, "done": False, "error": None, "status": None}
    first = None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as r:
            out["status"] = r.status_code
            if r.status_code != 200:
                text = await r.aread()
                out["ending"] = "refused" if clean_refusal(r.status_code, text) else "lost"
                out["error"] = f"HTTP {r.status_code}: {text[:200]!r}"
                return out
            if not stream:
                answer = json.loads(await r.aread())
                first = time.perf_counter()
                out["tokens"] = answer["usage"]["completion_tokens"]
                out["done"] = answer["choices"][0]["finish_reason"] is not None
            else:
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        out["done"] = True
                        break
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        out["error"] = f"error event: {chunk['error'].get('message')}"
                        continue
                    if chunk["choices"] and chunk["choices"][0]["text"]:
                        out["tokens"] += 1  # one character, one token
                        first = first or time.perf_counter()
    except httpx.HTTPError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    end = time.perf_counter()
    whole = out["done"] and not out["error"] and out["tokens"] == max_tokens
    out.update(
        ending="whole" if whole else "lost",
        ttft_s=(first - t0) if first else None,
        seconds=end - t0,
        stream_tok_s=out["tokens"] / (end - first) if stream and first and end > first else None,
    )
    return out


async def gives_up(client: httpx.AsyncClient, max_tokens: int, seed: int, after_s: float) -> dict:
    """A client that leaves after `after_s` seconds: every other one streaming, the rest not."""
    stream = seed % 2 == 0
    try:
        result = await asyncio.wait_for(one(client, max_tokens, seed, stream), after_s)
    except asyncio.TimeoutError:  # the usual case: it left before its answer was whole, closing its connection
        return {"ending": "gave up", "stream": stream}
    return result | {"ending": "gave up", "answered_first": True, "stream": stream}


async def round_of(
    url: str,
    clients: int,
    max_tokens: int,
    offset: int,
    give_up: int = 0,
    give_up_after: float = 0.5,
    give_up_tokens=400,
) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120.0), limits=limits) as client:
        t0 = time.perf_counter()
        staying = [one(client, max_tokens, offset + i) for i in range(clients - give_up)]
        leaving = [gives_up(client, give_up_tokens, offset + clients + i, give_up_after) for i in range(give_up)]
        results = await asyncio.gather(*staying, *leaving)
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
    p.add_argument("--clients", type=int, default=50, help="concurrent clients per round")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--give-up", type=int, default=0, metavar="N", help="clients per round that leave mid-request")
    p.add_argument("--give-up-after", type=float, default=0.5, metavar="S", help="when they leave (seconds)")
    p.add_argument("--give-up-tokens", type=int, default=400, metavar="N", help="max_tokens they ask for")
    p.add_argument("--json", metavar="FILE", help="write the results here")
    args = p.parse_args()
    if not 0 <= args.give_up <= args.clients:
        p.error("--give-up must be between 0 and --clients")
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
            before = proc_status(server.pid)
            rss = [before["rss_mib"]]
            rounds = []
            for k in range(args.rounds):
                if time.monotonic() > deadline:
                    break
                offset = k * (args.clients + args.give_up)
                results, wall = asyncio.run(
                    round_of(
                        url,
                        args.clients,
                        args.max_tokens,
                        offset,
                        args.give_up,
                        args.give_up_after,
                        args.give_up_tokens,
                    )
                )
                rss.append(rss_mib(server.pid))
                rounds.append((results, wall))
                endings = {e: sum(r["ending"] == e for r in results) for e in ("whole", "refused", "gave up", "lost")}
                print(f"round {k + 1}: {endings}, {wall:.1f} s, server RSS {rss[-1]:.0f} MiB")
            time.sleep(2)  # abandoned generations stop within a token; give the server a moment to settle
            after = proc_status(server.pid)
            health = httpx.get(url + "/health", timeout=10).json()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    everything = [r for results, _ in rounds for r in results]
    stayed = [r for r in everything if r["ending"] != "gave up"]
    lost = [r for r in stayed if r["ending"] == "lost"]
    whole = [r for r in stayed if r["ending"] == "whole"]
    ttft = [r["ttft_s"] for r in whole if r.get("ttft_s") is not None]
    per_stream = [r["stream_tok_s"] for r in whole if r.get("stream_tok_s")]
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
        "gave_up_per_round": args.give_up,
        "give_up_after_s": args.give_up_after,
        "give_up_max_tokens": args.give_up_tokens,
        "gave_up_after_their_answer": sum(bool(r.get("answered_first")) for r in everything),
        "rounds": len(rounds),
        "max_tokens": args.max_tokens,
        "requests": len(everything),
        "stayed": len(stayed),
        "whole": len(whole),
        "refused_cleanly": sum(r["ending"] == "refused" for r in stayed),
        "gave_up": len(everything) - len(stayed),
        "lost": len(lost),
        "failures": [r.get("error") or f"{r['tokens']} tokens, done={r['done']}" for r in lost][:10],
        "ttft_p50_s": round(pct(ttft, 0.5), 3) if ttft else None,
        "ttft_p95_s": round(pct(ttft, 0.95), 3) if ttft else None,
        "ttft_max_s": round(max(ttft), 3) if ttft else None,
        "tokens_per_s_per_stream_p50": round(statistics.median(per_stream), 1) if per_stream else None,
        "tokens_per_s_all_streams": round(total_tokens / sum(wall for _, wall in rounds), 1),
        "round_wall_s": [round(wall, 2) for _, wall in rounds],
        "server_rss_mib": {
            "after_model_load": round(rss[0], 1),
            "after_each_round": [round(x, 1) for x in rss[1:]],
            "growth_after_first_round": round(rss[-1] - rss[1], 1) if len(rss) > 1 else None,
        },
        "server_before": {"threads": before["threads"], "rss_mib": round(before["rss_mib"], 1)},
        "server_after": {"threads": after["threads"], "rss_mib": round(after["rss_mib"], 1)},
        "server_health_after": health,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
