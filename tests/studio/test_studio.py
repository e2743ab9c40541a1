"""bricklm studio and serve: the OpenAI-compatible API (through the official client too), the limits, the
security rules, live logs of a run being written, look inside, the commands, and the page in headless Chromium.

Every server here listens on 127.0.0.1 at a free port, and every request goes there.
"""

import asyncio
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from bricklm.cli import main
from bricklm.files import RunLock
from bricklm.model.generate import generate
from bricklm.storage.metrics import truncate_logs
from bricklm.storage.runs import load_run
from bricklm.studio import create_app
from bricklm.studio.engine import Busy, Engine
from bricklm.studio.inside import context_start, look_inside
from bricklm.studio.logs import REFRESH_S, Cursor, RunLogs
from bricklm.studio.models import ModelCache, Served
from bricklm.studio.runsdir import WALK_TTL_S, RunsDir
from bricklm.studio.server import bind
from conftest import TINY_FLAGS, serving

REPO = Path(__file__).resolve().parents[2]
CHATS = [
    {"prompt": "fox?", "response": "the dog."},
    {"prompt": "a dog", "response": "a fox."},
    {"prompt": "lazy?", "response": "brown."},
]
SECRET = "TOP-SECRET-OUTSIDE-THE-RUNS-FOLDER"
USER_X = [{"role": "user", "content": "x"}]


# --- fixtures: a runs folder with a finished run, a fine-tuned run, a sweep, and traps ---------------


@pytest.fixture(scope="module")
def runs_root(tiny_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("studio")
    root = base / "runs"
    root.mkdir()
    shutil.copytree(tiny_run, root / "tiny")
    data = base / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    flags = ["--max-iters", "2", "--eval-interval", "2", "--batch-size", "2", "--eval-iters", "1", "--device", "cpu"]
    assert (
        main(["finetune", "--from", str(tiny_run), "--data", str(data), "--out", str(root / "tiny-chat"), *flags]) == 0
    )
    for name in ("run-01", "run-02"):
        shutil.copytree(tiny_run, root / "sweep" / name)
    (root / "sweep" / "experiment.json").write_text(json.dumps({"kind": "sweep", "data": "", "meta": {}, "runs": []}))
    # Traps: a complete run outside the folder reached by a symlink, a metrics.jsonl and a best.json that
    # point outside, and a run stopped without a summary (interrupted).
    outside = base / "outside"
    shutil.copytree(tiny_run, outside / "stolen")
    (outside / "secret.jsonl").write_text(
        json.dumps({"step": 1, "eval": True, "train_loss": 1, "val_loss": 1, "note": SECRET}) + "\n"
    )
    (root / "escape").symlink_to(outside / "stolen", target_is_directory=True)
    shutil.copytree(tiny_run, root / "trap")
    (root / "trap" / "metrics.jsonl").unlink()
    (root / "trap" / "metrics.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "trap" / "checkpoints" / "best.json").write_text(
        json.dumps({"dir": "../../../outside/stolen/checkpoints/step-000000006"})
    )
    (root / "trap" / "summary.json").unlink()
    return root


@pytest.fixture(scope="module")
def server(runs_root):
    app = create_app(runs_root, allowed_hosts=["127.0.0.1", "localhost"])
    with serving(app) as url:
        yield url


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server + "/v1", api_key="not-needed", max_retries=0, timeout=30)


def error_of(r: httpx.Response) -> str:
    return r.json()["error"]["message"]


# --- the OpenAI-compatible API, through the official client -------------------------------------------


def test_models_are_the_runs_that_have_checkpoints(client):
    ids = {m.id for m in client.models.list()}
    assert {"tiny", "tiny-chat", "sweep/run-01", "sweep/run-02", "trap"} <= ids
    assert "escape" not in ids and not any("stolen" in i for i in ids)
    assert client.models.retrieve("sweep/run-01").id == "sweep/run-01"


def test_completion_through_the_openai_client(client):
    r = client.completions.create(model="tiny", prompt="The ", max_tokens=12, temperature=0.8, seed=7)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert len(r.choices[0].text) == 12 and r.usage.completion_tokens == 12 and r.usage.prompt_tokens == 4
    again = client.completions.create(model="tiny", prompt="The ", max_tokens=12, temperature=0.8, seed=7)
    assert again.choices[0].text == r.choices[0].text  # a seed makes a request repeatable


def test_chat_reply_streams_in_several_chunks_through_the_openai_client(client):
    for seed in range(20):  # a barely fine-tuned model may end its turn at once; some seed lets it talk
        stream = client.chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": "fox?"}],
            max_tokens=8,
            temperature=1.0,
            seed=seed,
            stream=True,
        )
        chunks = list(stream)
        content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        if len(content) >= 2:
            break
    assert len(content) >= 2, "no reply came in more than one chunk"
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert len({c.id for c in chunks}) == 1


def test_client_errors_unknown_model_404_oversize_400_base_run_chat_400(client):
    import openai

    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-run", prompt="a", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="a", max_tokens=5000)
    assert "max_tokens" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert "bricklm finetune" in str(e.value)


def test_stream_is_openai_chunks_then_usage_then_done(http):
    body = {
        "model": "tiny",
        "prompt": "The ",
        "max_tokens": 9,
        "stream": True,
        "stream_options": {"include_usage": True},
        "return_token_ids": True,
    }
    with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[0]["prompt_token_ids"] and len(chunks[0]["prompt_token_ids"]) == 4
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 9
    text = "".join(ch["text"] for c in chunks for ch in c["choices"])
    ids = [i for c in chunks for ch in c["choices"] for i in ch.get("token_ids", [])]
    assert len(text) == 9 and len(ids) == 9
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_any_checkpoint_or_snapshot_is_a_model(http, runs_root):
    for model in ("tiny@last", "tiny@step-000000003", "tiny@loss-4.00"):
        r = http.post("/v1/completions", json={"model": model, "prompt": "a", "max_tokens": 3})
        assert r.status_code == 200, r.text
    r = http.post("/v1/completions", json={"model": "tiny@step-000000999", "prompt": "a", "max_tokens": 3})
    assert r.status_code == 404 and "step-000000999" in error_of(r)


def test_stop_strings_cut_the_text(http):
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 40, "seed": 3})
    text = r.json()["choices"][0]["text"]
    stop = text[5:7]
    r = http.post(
        "/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 40, "seed": 3, "stop": [stop]}
    )
    choice = r.json()["choices"][0]
    assert choice["text"] == text[: text.index(stop)] and choice["finish_reason"] == "stop"


def test_a_damaged_checkpoint_is_a_clear_error_and_breaks_nothing_else(http, runs_root, tiny_run):
    run = runs_root / "damaged"
    shutil.copytree(tiny_run, run)
    weights = run / "checkpoints" / "step-000000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut short, as a disk full mid-copy would
    try:
        r = http.post("/v1/completions", json={"model": "damaged", "prompt": "a", "max_tokens": 2})
        assert r.status_code == 500 and "model.safetensors" in error_of(r) and "damaged" in error_of(r)
        r = http.post("/v1/completions", json={"model": "damaged@step-000000003", "prompt": "a", "max_tokens": 2})
        assert r.status_code == 200
        assert http.get("/api/runs").status_code == 200 and http.get("/health").json()["status"] == "ok"
    finally:
        shutil.rmtree(run)


def test_damaged_run_files_never_break_the_runs_table(http, runs_root):
    bad = {"bad-json": "{", "bad-tables": '{"model": 5, "train": "x"}', "bad-keys": '{"model": {"residual_bug": 3}}'}
    for name, text in bad.items():
        (runs_root / name).mkdir()
        (runs_root / name / "config.json").write_text(text)
        (runs_root / name / "metrics.jsonl").write_text('{"step": 1, "loss": NaN}\n[1]\n{"step": "x"}\n')
    time.sleep(WALK_TTL_S + 0.1)  # the folder is walked again after this
    try:
        rows = {r["id"]: r for r in http.get("/api/runs").json()}
        assert set(bad) <= set(rows) and all(rows[name]["parameters"] is None for name in bad)
        with http.stream("GET", "/api/live", params={"run": list(bad)}) as r:
            updates = [u for _, u in zip(bad, read_events(r), strict=False)]  # one event per run
        assert {u["id"] for u in updates} == set(bad) and all(u["steps"] == [] for u in updates)
        assert not set(bad) & {m["id"] for m in http.get("/v1/models").json()["data"]}  # no checkpoint to serve
    finally:
        for name in bad:
            shutil.rmtree(runs_root / name)


def test_every_static_file_ships_in_the_wheel():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    def matches(path: str, pattern: str) -> bool:  # a setuptools glob: "*" stays within one folder
        parts, pat = path.split("/"), pattern.split("/")
        return len(parts) == len(pat) and all(fnmatch.fnmatch(a, b) for a, b in zip(parts, pat, strict=True))

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = REPO / "src" / "bricklm" / "studio"
    files = [p.relative_to(package).as_posix() for p in (package / "static").rglob("*") if p.is_file()]
    assert "static/index.html" in files and "static/vendor/uplot/LICENSE" in files
    missing = [f for f in files if not any(matches(f, pat) for pat in patterns["bricklm.studio"])]
    assert missing == [], f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


# --- limits and malformed requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/completions", {"model": "tiny", "max_tokens": 0}, "max_tokens"),
        ("/v1/completions", {"model": "tiny", "temperature": 2.5}, "temperature"),
        ("/v1/completions", {"model": "tiny", "temperature": "hot"}, "temperature"),
        ("/v1/completions", {"model": "tiny", "top_p": 0}, "top_p"),
        ("/v1/completions", {"model": "tiny", "top_k": -3}, "top_k"),
        ("/v1/completions", {"model": "tiny", "n": 2}, "n"),
        ("/v1/completions", {"model": "tiny", "prompt": "x" * 20000}, "prompt"),
        ("/v1/completions", {"model": "tiny", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ("/v1/completions", {"prompt": "no model"}, "model"),
        ("/v1/completions", {"model": "tiny", "prompt": "price: 5 €"}, "prompt"),
        ("/v1/chat/completions", {"model": "tiny-chat", "messages": []}, "messages"),
        (
            "/v1/chat/completions",
            {"model": "tiny-chat", "messages": [{"role": "assistant", "content": "x"}]},
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": "tiny-chat", "messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role",
        ),
        ("/v1/chat/completions", {"model": "tiny-chat", "max_tokens": 17, "messages": USER_X}, "max_tokens"),
    ],
)
def test_bad_requests_are_400_naming_the_field(http, path, body, param):
    r = http.post(path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_a_prompt_character_outside_the_vocabulary_is_named(http):
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": "price: 5 €"})
    assert "€" in error_of(r)


def test_chat_reply_is_bounded_by_the_runs_window(http):
    r = http.post(
        "/v1/chat/completions",
        json={"model": "tiny-chat", "max_tokens": 17, "messages": [{"role": "user", "content": "x"}]},
    )
    assert "at most 16" in error_of(r)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'{"model": "tiny", "prompt": "a"'])
def test_malformed_json_is_a_400(http, raw):
    r = http.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)


def test_oversize_body_wrong_host_and_unknown_route(http):
    r = http.post(
        "/v1/completions",
        content=b'{"prompt": "' + b"a" * (2 << 20) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    r = http.get("/health", headers={"host": "attacker.example:8000"})  # DNS rebinding: another site's name
    assert r.status_code == 400 and "Host" in error_of(r)
    r = http.get("/no/such/page")
    assert r.status_code == 404 and error_of(r)
    assert http.get("/health").json()["status"] == "ok"


# --- security: nothing outside the runs folder is read; nothing inside is written ------------------------


@pytest.mark.parametrize(
    "model",
    [
        "../tiny",
        "/etc/passwd",
        "tiny/../tiny-chat",
        "escape",
        "tiny@../../outside",
        "tiny@step-000000003/..",
        "%2e%2e%2ftiny",
        "tiny@/etc",
        "sweep/../tiny",
    ],
)
def test_model_names_never_escape(http, model):
    r = http.post("/v1/completions", json={"model": model, "prompt": "a", "max_tokens": 2})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "url",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/%2e%2e%2fapp.py",
        "/static//etc/passwd",
        "/api/live?run=..",
        "/api/live?run=../outside",
        "/api/live?run=escape",
        "/api/live?run=%2Fetc",
        "/v1/models/..%2F..%2Fetc%2Fpasswd",
    ],
)
def test_paths_never_escape(http, url):
    r = http.get(url)
    assert r.status_code == 404 and b"import" not in r.content and b"root:" not in r.content


def test_symlinks_out_of_the_folder_are_not_followed(http):
    rows = {r["id"]: r for r in http.get("/api/runs").json()}
    assert "escape" not in rows
    trap = rows["trap"]
    assert trap["best_val_loss"] is None and trap["step"] == 0  # its metrics.jsonl points outside: unread
    assert SECRET not in http.get("/api/runs").text
    with http.stream("GET", "/api/live", params={"run": "trap"}) as r:
        update = next(json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: "))
    assert update["evals"] == [] and SECRET not in json.dumps(update)
    # best.json names a checkpoint outside: the run is served from its own newest checkpoint instead.
    r = http.post("/v1/completions", json={"model": "trap", "prompt": "a", "max_tokens": 2})
    assert r.status_code == 200
    assert "trap@step-000000006" in http.get("/health").json()["models"]


def tree(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_the_studio_never_writes_into_a_run(http, runs_root):
    before = tree(runs_root)
    http.get("/api/runs")
    with http.stream("GET", "/api/live", params={"run": ["tiny", "tiny-chat"]}) as r:
        next(line for line in r.iter_lines() if line.startswith("data: "))
    for model in ("tiny", "tiny@last", "tiny@loss-4.00", "sweep/run-01"):
        http.post("/v1/completions", json={"model": model, "prompt": "The ", "max_tokens": 4})
    http.post("/v1/chat/completions", json={"model": "tiny-chat", "messages": [{"role": "user", "content": "a"}]})
    http.post("/api/inside", json={"model": "tiny", "ids": [1, 2, 3], "prompt_len": 1, "position": 2})
    assert tree(runs_root) == before


# --- the runs table, status, live logs of a run being written ---------------------------------------------


def test_runs_table_newest_first_with_status_and_groups(http, runs_root):
    os.utime(runs_root / "tiny" / "metrics.jsonl")  # the most recently active
    rows = http.get("/api/runs").json()
    by_id = {r["id"]: r for r in rows}
    assert rows[0]["id"] == "tiny"
    assert by_id["tiny"]["status"] == "finished" and by_id["trap"]["status"] == "interrupted"
    assert by_id["tiny"]["parameters"] == load_run(runs_root / "tiny").model.n_params()
    assert by_id["tiny"]["best_val_loss"] == pytest.approx(
        json.loads((runs_root / "tiny" / "summary.json").read_text())["best_val_loss"]
    )
    assert by_id["tiny-chat"]["chat"] and not by_id["tiny"]["chat"]
    assert by_id["sweep/run-01"]["group"] == "sweep" and by_id["sweep/run-01"]["group_kind"] == "sweep"
    assert by_id["tiny"]["config"]["model"]["n_layer"] == 1
    assert by_id["tiny"]["checkpoints"] == ["step-000000003", "step-000000006"]


def read_events(response):
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


def test_live_stream_follows_a_run_being_written(http, runs_root, tiny_run):
    run = runs_root / "growing"
    shutil.copytree(tiny_run, run)
    (run / "summary.json").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    evals = [line for line in lines if '"eval"' in line]
    (run / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n" + evals[-1][:25])  # a torn last line
    lock = RunLock(run)
    lock.acquire()  # this test is the trainer: a live process holds the lock
    try:
        with http.stream("GET", "/api/live", params={"run": "growing"}, timeout=15) as r:
            events = read_events(r)
            first = next(events)
            assert first["reset"] and first["row"]["status"] == "running"
            assert len(first["evals"]) == 1 and len(first["steps"]) == 2  # the torn line is not read yet
            with open(run / "metrics.jsonl", "a") as fh:  # the trainer finishes the line and logs a step
                fh.write(evals[-1][25:] + "\n" + json.dumps({"step": 7, "loss": 3.5, "lr": 0.001, "time": 0.5}) + "\n")
            update = next(events)
            assert not update["reset"] and [e["step"] for e in update["evals"]] == [json.loads(evals[-1])["step"]]
            assert update["steps"] == [[7, 3.5]]
            lock.release()
            final = next(e for e in events if e["row"]["status"] != "running")
            assert final["row"]["status"] == "interrupted"
    finally:
        lock.release()
        shutil.rmtree(run)


def test_logs_start_over_when_resume_rewrites_them(tiny_run, tmp_path):
    run_dir = tmp_path / "runs" / "r"
    shutil.copytree(tiny_run, run_dir)
    runs = RunsDir(tmp_path / "runs")
    logs = RunLogs(runs)
    cursor, first = logs.get(runs.get("r")).since(Cursor())
    assert first["reset"] and len(first["evals"]) == 3
    # --resume from step 3 keeps the log up to that step, written anew and renamed into place.
    truncate_logs(run_dir, 3)
    time.sleep(REFRESH_S + 0.05)
    cursor, again = logs.get(runs.get("r")).since(cursor)
    assert again["reset"] and [e["step"] for e in again["evals"]] == [0, 3] and len(again["samples"]) == 2
    time.sleep(REFRESH_S + 0.05)
    assert logs.get(runs.get("r")).since(cursor) == (cursor, None)  # nothing new


def test_status_reads_the_lock_without_taking_it(tiny_run, tmp_path):
    run = tmp_path / "runs" / "r"
    shutil.copytree(tiny_run, run)
    runs = RunsDir(tmp_path / "runs")
    (r,) = runs.runs()
    assert runs.status(r) == "finished"
    (run / "summary.json").unlink()
    (run / "train.lock").write_text('{"pid": 1}\n')  # left by a crash: nobody holds it
    assert runs.status(r) == "interrupted"
    with RunLock(run):
        assert runs.status(r) == "running"
        assert RunsDir(tmp_path / "runs").status(r) == "running"
    assert not (run / "train.lock").exists()  # the studio's probe did not keep or recreate it


# --- look inside, the model cache, the engine -------------------------------------------------------------


def test_context_start_replays_generate(tiny_run):
    model = load_run(tiny_run).model
    block = model.config.block_size
    seen = []
    real_forward = model.forward
    model.forward = lambda idx, *a, **k: (seen.append(idx.size(1)), real_forward(idx, *a, **k))[1]
    prompt_len = 5
    list(generate(model, torch.zeros(1, prompt_len, dtype=torch.long), 3 * block, use_cache=False))
    for position, context_len in enumerate(seen, start=prompt_len):
        assert position - context_start(prompt_len, position, block) == context_len


def test_look_inside_agrees_with_the_model(tiny_run):
    run = load_run(tiny_run)
    served = Served("tiny", "best", run.model, run.tokenizer)
    ids = run.tokenizer.encode("The quick brown fox")
    view = look_inside(served, ids, prompt_len=4, position=10)
    with torch.no_grad():
        logits, _ = run.model(torch.tensor([ids[:10]]))
    probs = torch.softmax(logits[0, -1], dim=-1)
    assert view["lens"][-1]["chosen_p"] == pytest.approx(float(probs[ids[10]]), abs=1e-4)
    assert view["lens"][-1]["top"][0]["token"] == run.tokenizer.decode([int(probs.argmax())])
    assert len(view["lens"][-1]["top"]) == 5
    assert [row["layer"] for row in view["lens"]] == ["embedding", "layer 1"]
    (heads,) = view["attention"]
    assert len(heads) == run.model_cfg.n_head and all(len(h) == 10 for h in heads)
    assert all(sum(h) == pytest.approx(1, abs=1e-3) for h in heads)
    assert "".join(view["context"]) == "The quick " and view["token"] == "b"


def test_inside_route(http):
    r = http.post("/api/inside", json={"model": "tiny", "ids": [1, 2, 3, 4], "prompt_len": 2, "position": 3})
    assert r.status_code == 200 and len(r.json()["attention"][0]) == 2
    assert (
        http.post("/api/inside", json={"model": "tiny", "ids": [1, 2], "prompt_len": 1, "position": 5}).status_code
        == 400
    )
    assert (
        http.post("/api/inside", json={"model": "tiny", "ids": [1, 999], "prompt_len": 1, "position": 1}).status_code
        == 400
    )


def test_model_cache_loads_once_and_is_bounded(runs_root):
    runs = RunsDir(runs_root)
    cache = ModelCache(runs, capacity=2)
    tiny = runs.get("tiny")
    first = cache.get(tiny, "best")
    assert cache.get(tiny, "best") is first and cache.get(tiny, "step-000000006") is first  # best is step 6
    cache.get(tiny, "step-000000003")
    cache.get(tiny, "loss-4.00")
    assert cache.loaded() == ["tiny@step-000000003", "tiny@loss-4.00"]


def test_engine_takes_turns_is_bounded_and_cancels_a_stream_that_is_dropped():
    async def scenario():
        engine = Engine(workers=1, max_jobs=2)
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def endless(name):
            def job():
                try:
                    while True:
                        yield name
                finally:  # the engine closed the job once its stream was dropped
                    loop.call_soon_threadsafe(closed.set_result, name)

            return job

        a, b = engine.submit(endless("a")), engine.submit(endless("b"))
        with pytest.raises(Busy):
            engine.submit(endless("c"))
        # One worker, two jobs: both make progress (turns), neither waits for the other to finish.
        assert [await a.__anext__() for _ in range(3)] == ["a"] * 3 and await b.__anext__() == "b"
        del b  # dropped unread, as when a response is abandoned
        assert await asyncio.wait_for(closed, 5) == "b"
        await a.aclose()
        deadline = time.monotonic() + 5
        while engine.stats()["generating"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert engine.stats()["generating"] == 0
        engine.shutdown()

    asyncio.run(scenario())


def test_a_client_that_disconnects_stops_its_generation(http):
    before = http.get("/health").json()["tokens"]
    body = {"model": "tiny", "prompt": "The ", "max_tokens": 4096, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as r:
        lines = r.iter_lines()
        next(lines), next(lines), next(lines)  # the first chunks arrived; now the client goes away
    deadline = time.monotonic() + 10
    while (health := http.get("/health").json())["generating"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["generating"] == 0
    time.sleep(0.3)
    made = http.get("/health").json()["tokens"] - before
    assert made < 4096, f"generation went on after the client left ({made} tokens)"


# --- the commands --------------------------------------------------------------------------------------


def test_cli_user_errors_are_one_line(tmp_path, tiny_run, capsys):
    assert main(["studio", "--runs", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bricklm: error: runs folder not found: {tmp_path / 'missing'} (") and "\n" not in err
    assert main(["serve", "--run", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bricklm: error:") and "config.json" in err and "\n" not in err
    busy = bind("127.0.0.1", 0)
    busy.listen()
    port = busy.getsockname()[1]
    try:
        assert main(["serve", "--run", str(tiny_run), "--port", str(port)]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"bricklm: error: port {port} on 127.0.0.1 is in use (another server?); pick another with --port"
        # Beyond loopback without a key: refused before anything listens.
        assert main(["serve", "--run", str(tiny_run), "--host", "0.0.0.0", "--port", str(port)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("bricklm: error: listening on 0.0.0.0 lets anyone") and "\n" not in err
        # --no-auth says so: a warning first (then the same busy port stops it before anything listens).
        assert main(["serve", "--run", str(tiny_run), "--host", "0.0.0.0", "--port", str(port), "--no-auth"]) == 1
        err = capsys.readouterr().err
        assert "bricklm: warning: listening on 0.0.0.0 without an API key (--no-auth): anyone on the network" in err
    finally:
        busy.close()


@pytest.mark.slow
def test_serve_command_answers_chat_for_one_run(runs_root):
    probe = bind("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bricklm", "serve", "--run", str(runs_root / "tiny-chat"), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                models = httpx.get(url + "/v1/models", timeout=5).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.2)
        assert [m["id"] for m in models["data"]] == ["tiny-chat"]
        body = {"model": "tiny-chat", "max_tokens": 5, "messages": USER_X}
        r = httpx.post(url + "/v1/chat/completions", timeout=30, json=body)
        assert r.status_code == 200 and r.json()["object"] == "chat.completion"
        assert "<title>bricklm studio</title>" in httpx.get(url + "/", timeout=5).text
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out


# --- the page, in headless Chromium ---------------------------------------------------------------------


def chromium():
    """A headless Chromium driven through Selenium and Debian's chromedriver, or a skip that says why not."""
    browser = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        reason = "selenium is not installed (pip install -e '.[dev]')"
    else:
        reason = (
            None if browser and driver else "no Chromium and chromedriver (apt-get install chromium chromium-driver)"
        )
    if reason:
        print(f"skipping the page test: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2100",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.fixture(scope="module")
def live_training(runs_root, tiny_corpus):
    """`bricklm train` writing into the runs folder while the page looks at it; stopped with SIGTERM after."""
    run = runs_root / "live"
    flags = [f for f in TINY_FLAGS]
    for name, value in (("--max-iters", "100000"), ("--eval-interval", "40"), ("--n-layer", "2")):
        flags[flags.index(name) + 1] = value
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "bricklm",
        "train",
        "--data",
        str(tiny_corpus),
        "--out",
        str(run),
        *flags,
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while not list((run / "checkpoints").glob("step-*/manifest.json")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "training did not write a checkpoint"
        time.sleep(0.2)
    yield run
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.mark.slow
def test_a_run_in_training_is_listed_running_and_served(http, live_training):
    row = next(r for r in http.get("/api/runs").json() if r["id"] == "live")
    assert row["status"] == "running" and row["step"] > 0 and row["max_iters"] == 100000
    first = row["checkpoints"]
    for _ in range(2):  # checkpoints keep appearing (and old ones pruned) while it is served
        r = http.post("/v1/completions", json={"model": "live", "prompt": "The ", "max_tokens": 5})
        assert r.status_code == 200, r.text
        r = http.post("/v1/completions", json={"model": "live@last", "prompt": "The ", "max_tokens": 5})
        assert r.status_code == 200, r.text
        time.sleep(1.5)
    row = next(r for r in http.get("/api/runs").json() if r["id"] == "live")
    assert row["checkpoints"] != first and row["tokens_per_s"] > 0 and row["eta_s"] > 0


@pytest.mark.slow
def test_the_page_shows_runs_live_curves_samples_playground_inside_and_chat(server, live_training, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    # The page redraws its tables and legend as the live run writes: an element read while it is replaced
    # is stale, so every read goes through a wait, which tries again rather than failing on that.
    wait = WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))
    css = lambda sel: driver.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    try:
        driver.get(server + "/")
        wait.until(lambda d: len(css("#runs tr.run")) >= 6)
        rows = wait.until(lambda d: [e.get_attribute("data-run") for e in css("#runs tr.run")])
        assert {"live", "tiny", "tiny-chat", "sweep/run-01", "sweep/run-02"} <= set(rows)
        assert "escape" not in rows
        assert wait.until(lambda d: css('#runs tr.run[data-run="live"] .status')[0].text) == "running"
        assert wait.until(lambda d: css('#runs tr.run[data-run="tiny"] .status')[0].text) == "finished"

        # Curves: the newest run (the live one) is drawn; a sweep overlays all its runs in one click.
        def live_points(d):
            found = css('#legend li[data-run="live"]')
            return int(found[0].get_attribute("data-points")) if found else 0

        wait.until(lambda d: live_points(d) > 0)
        first_look = wait.until(lambda d: live_points(d))
        assert css("#chart canvas"), "the chart was not drawn"
        wait.until(lambda d: live_points(d) > first_look)  # the curve grew without a reload
        assert "tokens/s" in wait.until(lambda d: d.find_element(By.ID, "progress").text)
        driver.find_element(By.CSS_SELECTOR, 'button[data-group="sweep"]').click()
        wait.until(
            lambda d: {e.get_attribute("data-run") for e in css("#legend li")} == {"sweep/run-01", "sweep/run-02"}
        )
        wait.until(lambda d: int(d.find_element(By.ID, "chart").get_attribute("data-points")) > 0)
        # Samples: one per evaluation of the focused run, beside its val loss.
        wait.until(lambda d: len(css("#samples li pre")) == 3)
        assert "val 3." in wait.until(lambda d: d.find_element(By.ID, "samples").text)

        # Playground: stream from a checkpoint, then look inside one generated character.
        driver.find_element(By.CSS_SELECTOR, '#pg-run option[value="tiny"]').click()
        driver.find_element(By.ID, "pg-prompt").send_keys("The ")
        length = driver.find_element(By.ID, "pg-length")
        length.clear()
        length.send_keys("40")
        driver.find_element(By.ID, "pg-go").click()
        wait.until(lambda d: len(css("#pg-output .tok")) == 40)
        css("#pg-output .tok")[30].click()
        wait.until(lambda d: len(css("#attention .head")) == 2)  # 1 layer x 2 heads
        assert (
            len(css("#lens tr.lens-row")) == 2
            and len(css("#lens tr.lens-row")[0].find_elements(By.CSS_SELECTOR, ".chip")) == 5
        )
        strip = css("#attention .head .strip")[0].find_elements(By.CSS_SELECTOR, "span")
        position = 4 + 30  # after the prompt's 4 tokens
        assert len(strip) == position - context_start(4, position, 16)  # the context the sampler had

        # Chat with the fine-tuned run.
        driver.find_element(By.CSS_SELECTOR, '#chat-run option[value="tiny-chat"]').click()
        driver.find_element(By.ID, "chat-input").send_keys("fox?")
        driver.find_element(By.ID, "chat-send").click()
        wait.until(lambda d: len(css("#chat-log li")) == 2 and d.find_element(By.ID, "chat-send").is_enabled())
        assert not css("#chat-log li.assistant")[0].text.startswith("error")

        # Back to the live run for the picture in the README.
        driver.find_element(By.CSS_SELECTOR, '#runs tr.run[data-run="live"] input').click()
        wait.until(lambda d: live_points(d) > 0)
        time.sleep(0.5)
        shot = driver.get_screenshot_as_png()
        assert shot.startswith(b"\x89PNG")
        # The README's picture: refreshed on request, so a test run doesn't leave the checkout modified.
        picture = REPO / "docs" / "studio.png" if os.environ.get("BRICKLM_REFRESH_DOCS") else tmp_path / "studio.png"
        picture.write_bytes(shot)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
