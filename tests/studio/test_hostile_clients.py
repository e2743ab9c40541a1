"""The studio under careless and hostile clients (issue 31): each test sends what a stranger sent and checks
the answer. Clients that give up, long chat histories, sampling settings at the edge of float32, a job that
fails mid-stream, too many live pages, damaged run files, and connections that send their headers slowly.

Every server here listens on 127.0.0.1 at a free port; every wait is bounded.
"""

import asyncio
import json
import os
import shutil
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from bricklm.config import ModelConfig
from bricklm.model.gpt import GPT
from bricklm.studio import create_app
from bricklm.studio.live import LiveFeed, Subscription
from bricklm.studio.logs import LiveRuns
from bricklm.studio.models import Served
from bricklm.studio.runsdir import WALK_TTL_S, RunsDir, lock_is_held
from bricklm.studio.sampling import Piece, Settings, chat_prompt, prompt_ids
from bricklm.text.tokenizer import CharTokenizer, ChatTokenizer
from conftest import serving


@pytest.fixture(scope="module")
def server(tiny_runs):
    # One generation thread and two slots, so that two abandoned requests would hold every slot.
    app = create_app(tiny_runs, allowed_hosts=["127.0.0.1"], workers=1, max_jobs=2, max_live=2)
    with serving(app, header_timeout=1.0) as url:
        yield url


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def post_raw(url: str, path: str, body: dict) -> socket.socket:
    """A POST sent whole on a socket of its own, its answer not read: the caller decides when to give up."""
    data = json.dumps(body).encode()
    sock = connect(url)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(data)}"
    sock.sendall(head.encode() + b"\r\n\r\n" + data)
    return sock


def wait_until(check, seconds: float = 10.0, every: float = 0.05):
    """check()'s first true value, or its last value once `seconds` have passed (a bound against a hang)."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


# --- clients that give up ----------------------------------------------------------------------------------


def test_abandoned_non_streaming_requests_stop_and_free_their_slots_at_once(http, server, caplog):
    before = http.get("/health").json()["tokens"]
    body = {"model": "tiny", "prompt": "The ", "max_tokens": 4096}
    gone = [post_raw(server, "/v1/completions", body) for _ in range(2)]  # every slot there is
    assert wait_until(lambda: http.get("/health").json()["generating"] == 2, 10)
    time.sleep(0.5)
    for sock in gone:  # the clients give up after half a second
        sock.close()
    assert wait_until(lambda: http.get("/health").json()["generating"] == 0, 5), "the slots were not freed"
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 5})
    assert r.status_code == 200, r.text  # not 503: the slots are free
    made = http.get("/health").json()["tokens"] - before
    assert made < 2 * 4096, f"the abandoned requests went on generating ({made} tokens)"
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []  # leaving is no error


def test_a_streaming_client_that_leaves_frees_its_slot(http):
    body = {"model": "tiny", "prompt": "The ", "max_tokens": 4096, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as r:
        lines = r.iter_lines()
        next(lines), next(lines)
    assert wait_until(lambda: http.get("/health").json()["generating"] == 0, 5)


# --- sampling settings at the edge, and a job that fails ----------------------------------------------------


@pytest.mark.parametrize("top_p", [1e-46, 1e-300, 5e-324])
def test_a_top_p_that_float32_rounds_to_zero_still_answers(http, top_p):
    body = {"model": "tiny", "prompt": "The ", "max_tokens": 6, "top_p": top_p, "seed": 1}
    r = http.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"][0]["text"]) == 6
    with http.stream("POST", "/v1/completions", json=body | {"stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and not any('"error"' in line for line in lines)
    text = "".join(c["text"] for line in lines[:-1] for c in json.loads(line[6:])["choices"])
    assert len(text) == 6


@pytest.fixture
def failing_job(monkeypatch):
    """Generation that fails after its first token, as a bug or a damaged model would."""

    def completion(served, ids, s, guard=None):
        yield Piece("x", [1])
        raise RuntimeError("probability tensor contains either inf, nan or element < 0")

    monkeypatch.setattr("bricklm.studio.api.completion", completion)


def test_a_job_that_fails_mid_stream_ends_the_stream_properly(http, failing_job):
    body = {"model": "tiny", "prompt": "The ", "max_tokens": 5, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])["error"]
    assert error["type"] == "server_error" and error["message"].startswith("generation failed")
    assert set(error) == {"message", "type", "param", "code"}
    assert "probability tensor" not in error["message"]  # what went wrong inside is for the log
    assert json.loads(lines[1][6:])["choices"][0]["text"] == "x"  # what was made before it failed arrived


def test_a_job_that_fails_is_a_clean_500_without_streaming(http, failing_job):
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 5})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "generation_failed" and r.json()["error"]["type"] == "server_error"
    assert http.get("/health").json()["generating"] == 0


# --- long histories and prompts: each message tokenized once ---------------------------------------------------


class Counting(ChatTokenizer):
    """A chat tokenizer that counts its encode calls and the characters they were given."""

    calls = chars = 0

    def encode(self, text, unknown="error"):
        self.calls += 1
        self.chars += len(text)
        return super().encode(text, unknown)


def chat_served(block_size=256) -> Served:
    tok = Counting(CharTokenizer.from_text("abcdefgh ?"))
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16))
    return Served("chat", "best", model.eval(), tok)


def conversation(n: int) -> list[dict[str, str]]:
    """n messages of 64 characters, user and assistant in turn, ending with the user's."""
    roles = ["user", "assistant"] * n
    return [{"role": roles[i + (n % 2 == 0)], "content": ("abcdefgh" * 8)} for i in range(n)]


@pytest.mark.parametrize("n", [16, 128, 255])
def test_a_long_chat_history_is_tokenized_once_per_message(n):
    # Trimming used to re-render the whole conversation after dropping each turn: n messages cost ~n²/2
    # encode calls (8,256 for 128), and four such chats held a 5-token completion up for 15 seconds.
    served = chat_served()
    messages = [{"role": "system", "content": "be terse"}, *conversation(n)]
    chat, ids = chat_prompt(served, messages, Settings(max_tokens=16))
    assert served.tokenizer.calls == n + 1  # each message (and the system one) once
    assert served.tokenizer.chars == sum(len(m["content"]) for m in messages)
    assert len(ids) <= 256 - 16 and chat.history[-1] == messages[-1] and len(chat.history) < n


def test_a_long_prompt_is_tokenized_once():
    served = chat_served()
    ids = prompt_ids(served, "abcdefgh" * 2048)  # 16,384 characters: the most a request may send
    assert len(ids) == 16_384 and served.tokenizer.calls == 1


# --- live pages ----------------------------------------------------------------------------------------------


def test_live_streams_are_capped(http):
    with (
        http.stream("GET", "/api/live", params={"run": "tiny"}) as a,
        http.stream("GET", "/api/live", params={"run": "tiny"}) as b,
    ):
        assert a.status_code == b.status_code == 200
        r = http.get("/api/live", params={"run": "tiny"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "server_busy"

    # Those two closed: room again, once the server has noticed.
    def opens():
        with http.stream("GET", "/api/live", params={"run": "tiny"}) as r:
            if r.status_code != 200:
                return False
            return json.loads(next(line for line in r.iter_lines() if line.startswith("data: "))[6:])["id"]

    assert wait_until(opens, 5) == "tiny"


def test_live_streams_work_from_one_event_loop_to_the_next(tiny_runs):
    # Starlette's TestClient runs each request on an event loop of its own; the feed's poller follows.
    from fastapi.testclient import TestClient

    client, seen = TestClient(create_app(tiny_runs)), []

    def three_pages():
        for _ in range(3):
            with client.stream("GET", "/api/live", params={"run": "tiny"}) as r:
                seen.append(json.loads(next(line for line in r.iter_lines() if line.startswith("data: "))[6:])["id"])

    reader = threading.Thread(target=three_pages, daemon=True)  # daemon: a stream that never starts can't hold pytest
    reader.start()
    reader.join(30)
    assert seen == ["tiny"] * 3


def test_many_streams_on_a_run_read_it_once_per_poll(tiny_runs):
    folder = RunsDir(tiny_runs)
    logs = LiveRuns(folder)
    read = []
    get = logs.get
    logs.get = lambda run: (read.append(run.id), get(run))[1]
    feed = LiveFeed(folder, logs)
    run = folder.get("tiny")

    async def subs():  # a Subscription's queue belongs to an event loop
        return [Subscription([run]) for _ in range(20)]

    news = feed.read(asyncio.run(subs()))
    assert read == ["tiny"]  # one read of the run for twenty streams
    assert all(len(events) == 1 and '"reset": true' in events[0] for _, events in news)


# --- damaged run files ---------------------------------------------------------------------------------------


def test_a_fifo_lock_reads_as_not_running_and_blocks_nothing(http, tiny_runs, tiny_run):
    run = tiny_runs / "fifo"
    shutil.copytree(tiny_run, run)
    (run / "summary.json").unlink()
    os.mkfifo(run / "train.lock")  # opening it for reading would wait for a writer forever
    try:
        answer = {}
        held = lambda: answer.setdefault("held", lock_is_held(run / "train.lock"))  # noqa: E731
        probe = threading.Thread(target=held, daemon=True)  # daemon: a probe that hangs doesn't hold pytest
        probe.start()
        probe.join(5)
        assert answer == {"held": False}
        time.sleep(WALK_TTL_S + 0.1)  # the folder is walked again after this
        for _ in range(3):  # each request used to leave one more server thread stuck
            r = http.get("/api/runs", timeout=5)
            assert r.status_code == 200
        assert {r["id"]: r["status"] for r in r.json()}["fifo"] == "interrupted"
    finally:
        shutil.rmtree(run)


def test_a_run_config_of_empty_braces_is_a_clear_error(http, tiny_runs, tiny_run):
    run = tiny_runs / "braces"
    shutil.copytree(tiny_run, run)
    (run / "config.json").write_text("{}")
    try:
        assert http.get("/api/runs").status_code == 200
        r = http.post("/v1/completions", json={"model": "braces@loss-4.00", "prompt": "The ", "max_tokens": 2})
        assert r.status_code == 500 and r.json()["error"]["code"] == "model_not_loadable"
        message = r.json()["error"]["message"]
        assert "braces/config.json" in message and "vocab_size" in message
        assert str(tiny_runs) not in message and not any(part.startswith("/") for part in message.split())
    finally:
        shutil.rmtree(run)


def test_error_bodies_name_files_inside_the_runs_folder_only(http, tiny_runs, tiny_run):
    run = tiny_runs / "cut"
    shutil.copytree(tiny_run, run)
    weights = run / "checkpoints" / "step-000000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    try:
        r = http.post("/v1/completions", json={"model": "cut", "prompt": "a", "max_tokens": 2})
        message = r.json()["error"]["message"]
        assert r.status_code == 500 and "cut/checkpoints/step-000000006/model.safetensors" in message
        assert str(tiny_runs) not in message and str(tiny_runs.resolve()) not in message
    finally:
        shutil.rmtree(run)


# --- connections ---------------------------------------------------------------------------------------------


def test_a_connection_that_sends_its_headers_slowly_is_closed(server):
    sock = connect(server)
    sock.settimeout(0.5)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed, deadline = False, time.monotonic() + 8  # the server's deadline is 1 s
    try:
        while time.monotonic() < deadline and not closed:
            sock.sendall(b"X-Slow: a\r\n")  # a header line now and then, never the blank line that ends them
            try:
                closed = sock.recv(1024) == b""
            except TimeoutError:
                pass
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    finally:
        sock.close()
    assert closed, "a connection still sending headers after 8 s was not closed"


def test_a_request_that_sends_its_headers_in_time_is_answered(server):
    sock = connect(server)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.3)
        sock.sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer
