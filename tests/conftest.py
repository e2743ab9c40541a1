"""Shared fixtures: a tiny corpus and a tiny trained run, built once per test session; conversations for them;
the studio's runs folder and server, built once per test module that asks for them."""

import atexit
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

# Tests must behave the same on any machine: two threads, as on the CI box.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# ...and spend no time tuning: `auto` means the plain settings (sdpa, float32, PyTorch's threads), and no test
# reads or writes the user's cache (the tuning tests turn measuring back on, with their own folder).
os.environ["BRICKLM_TUNE"] = "off"
os.environ["BRICKLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="bricklm-test-cache-")
atexit.register(shutil.rmtree, os.environ["BRICKLM_CACHE_DIR"], True)

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


# Conversations made of the tiny corpus's characters, short enough for its 16-token window,
# and one character ("?") the tiny corpus lacks, so finetune must add it.
TINY_CHATS = [
    {"prompt": "fox?", "response": "the dog."},
    {"messages": [{"role": "user", "content": "a dog"}, {"role": "assistant", "content": "a fox."}]},
    {"prompt": "lazy?", "response": "brown."},
    {"prompt": "quick", "response": "a word."},
    {"prompt": "learn?", "response": "a block."},
]
# Flags for a fine-tune of the tiny run that takes a few seconds.
FT_FLAGS = ["--max-iters", "4", "--eval-interval", "2", "--batch-size", "4", "--eval-iters", "1", "--device", "cpu"]


def write_jsonl(path, records):
    """records (dicts, or strings written as they are) one a line; returns path."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


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


# --- the studio's tests (tests/studio/): a runs folder with traps, and a server over it ----------------------

CHATS = [
    {"prompt": "fox?", "response": "the dog."},
    {"prompt": "a dog", "response": "a fox."},
    {"prompt": "lazy?", "response": "brown."},
]
SECRET = "TOP-SECRET-OUTSIDE-THE-RUNS-FOLDER"


@pytest.fixture(scope="module")
def tiny_runs(tiny_run, tmp_path_factory):
    """A runs folder holding a copy of the tiny run and nothing else (a server's tests that need no traps);
    one per test module, so a test may add runs to it."""
    import shutil

    root = tmp_path_factory.mktemp("tiny-runs") / "runs"
    shutil.copytree(tiny_run, root / "tiny")
    return root


@pytest.fixture(scope="module")
def runs_root(tiny_run, tmp_path_factory):
    """A runs folder with a finished run, a fine-tuned run, a sweep, and traps; one per test module."""
    import json
    import shutil

    from bricklm.cli import main

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


@contextmanager
def serving(app, **config):
    """Run a studio app (bricklm.studio.create_app) as `bricklm studio` runs it, uvicorn and all, on a thread
    and a free 127.0.0.1 port; yields its base URL. config: server.uvicorn_config's settings (header_timeout)."""
    import threading
    import time

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


@pytest.fixture(scope="module")
def server(runs_root):
    """The studio over runs_root, answering only loopback Host names; yields its base URL."""
    from bricklm.studio import create_app

    app = create_app(runs_root, allowed_hosts=["127.0.0.1", "localhost"])
    with serving(app) as url:
        yield url


@pytest.fixture
def http(server):
    import httpx

    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server + "/v1", api_key="not-needed", max_retries=0, timeout=30)


# --- the privacy guard and the highlight: a model that recites a planted line -----------------------------

PLANTED = "my bank pin is 4096 and my cat is called ziggy stardust."
HELD_OUT = (
    "The held-out note is about other things entirely: rain on the window, tea going cold, trains that run "
    "late, a fox crossing the road at night, and the smell of bread from the bakery downstairs. "
)


@pytest.fixture(scope="session")
def planted_runs(tmp_path_factory):
    """The privacy guard's and the highlight's runs folder (tests/studio/test_copy_guard.py, test_page.py):
    `planted` recites PLANTED (its last checkpoint), `chat` is fine-tuned from it to answer with the line's
    start, `bare` is `planted` without its copying index."""
    import shutil

    from bricklm.cli import main
    from bricklm.config import PrepareConfig
    from bricklm.storage.copying import COPYING
    from bricklm.text.prepare import prepare

    root = tmp_path_factory.mktemp("guard")
    src = root / "src"
    src.mkdir()
    for i in range(6):
        (src / f"a{i}.txt").write_text("\n".join([PLANTED] * 8))
    (src / "z-heldout.txt").write_text(HELD_OUT)
    share = 0.8 * len(HELD_OUT) / (6 * 8 * (len(PLANTED) + 1) + len(HELD_OUT))
    prepare([src], root / "corpus", PrepareConfig(split="tail", val_fraction=share), log=lambda *a: None)
    runs = root / "runs"
    flags = tiny_flags(
        n_embd=32, block_size=32, batch_size=16, max_iters=100, eval_interval=50, learning_rate=1e-2, loss_levels="1.0"
    )
    assert main(["train", "--data", str(root / "corpus"), "--out", str(runs / "planted"), *flags]) == 0
    chats = write_jsonl(root / "chats.jsonl", [{"prompt": "pin?", "response": PLANTED[:19]}] * 4)
    ft = [
        "--max-iters",
        "30",
        "--eval-interval",
        "30",
        "--batch-size",
        "8",
        "--eval-iters",
        "1",
        "--device",
        "cpu",
        "--learning-rate",
        "3e-3",
    ]
    assert (
        main(["finetune", "--from", str(runs / "planted"), "--data", str(chats), "--out", str(runs / "chat"), *ft]) == 0
    )
    shutil.copytree(runs / "planted", runs / "bare")
    shutil.rmtree(runs / "bare" / COPYING)
    return runs
