"""The runs table: its rows, newest first, with status and groups; damaged files and symlinks out of the
folder never break it or leak; the studio never writes into a run."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from bricklm.files import RunLock
from bricklm.storage.runs import load_run
from bricklm.studio.runsdir import WALK_TTL_S, RunsDir
from conftest import SECRET
from studiohelp import read_events


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


def test_a_continued_runs_row_carries_its_lineage(http, runs_root):
    """train --init-from writes config.json's init_from table; the row's config has it for the details pane."""
    run = runs_root / "continued"
    shutil.copytree(runs_root / "tiny", run)
    config = json.loads((run / "config.json").read_text())
    origin = {"run": "runs/tiny", "checkpoint": "runs/tiny/checkpoints/step-000000006", "step": 6, "added_tokens": 1}
    (run / "config.json").write_text(json.dumps({**config, "init_from": origin}))
    time.sleep(WALK_TTL_S + 0.1)  # the folder is walked again after this
    try:
        rows = {r["id"]: r for r in http.get("/api/runs").json()}
        assert rows["continued"]["config"]["init_from"] == origin and "init_from" not in rows["tiny"]["config"]
    finally:
        shutil.rmtree(run)
