"""`bricklm studio` and `bricklm serve`: user errors in one line, and a served run answering chat."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from bricklm.cli import main
from bricklm.studio.server import bind
from studiohelp import USER_X


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
