"""Shared fixtures: a tiny corpus and a tiny trained run, built once per test session."""

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

# Tests must behave the same on any machine: two threads, as on the CI box.
os.environ.setdefault("OMP_NUM_THREADS", "2")

TINY_TEXT = (
    "The quick brown fox jumps over the lazy dog. A small model learns the shape of words.\n"
    "Training a tiny transformer on a laptop is a fine way to learn what every block does.\n"
) * 30

# Flags for a model that trains in about a second.
TINY_FLAGS = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "16",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--max-iters",
    "6",
    "--eval-interval",
    "3",
    "--eval-iters",
    "2",
    "--warmup-iters",
    "2",
    "--sample-chars",
    "20",
    "--device",
    "cpu",
]


def tiny_flags(**changes) -> list[str]:
    """TINY_FLAGS with values replaced or added (keys as field names: max_iters -> --max-iters)."""
    out = list(TINY_FLAGS)
    for key, value in changes.items():
        flag = "--" + key.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = str(value)
        else:
            out += [flag, str(value)]
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from bricklm.text.prepare import prepare

    root = tmp_path_factory.mktemp("tiny")
    src = root / "posts"
    src.mkdir()
    for i in range(6):
        (src / f"post{i}.md").write_text(f"# Post {i}\n\n" + TINY_TEXT)
    out = root / "corpus"
    prepare([src], out, log=lambda *a, **k: None)
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    from bricklm.cli import main

    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS]) == 0
    return run


@contextmanager
def serving(app, **config):
    """Run a studio app (bricklm.studio.create_app) as `bricklm studio` runs it, uvicorn and all, on a thread
    and a free 127.0.0.1 port; yields its base URL. config: server.uvicorn_config's settings (header_timeout)."""
    import uvicorn

    from bricklm.studio.server import bind, uvicorn_config

    sock = bind("127.0.0.1", 0)
    settings = uvicorn_config(app, **config)
    settings.timeout_graceful_shutdown = 1
    server = uvicorn.Server(settings)
    app.state.studio.exiting = lambda: server.should_exit
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
