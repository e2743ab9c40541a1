"""/api/live: a run's curves and samples as training writes them, a torn last line, and logs that `--resume`
rewrote."""

import json
import shutil
import time

from bricklm.files import RunLock
from bricklm.storage.metrics import truncate_logs
from bricklm.studio.logs import REFRESH_S, Cursor, LiveRuns
from bricklm.studio.runsdir import RunsDir
from studiohelp import read_events


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
    logs = LiveRuns(runs)
    cursor, first = logs.get(runs.get("r")).since(Cursor())
    assert first["reset"] and len(first["evals"]) == 3
    # --resume from step 3 keeps the log up to that step, written anew and renamed into place.
    truncate_logs(run_dir, 3)
    time.sleep(REFRESH_S + 0.05)
    cursor, again = logs.get(runs.get("r")).since(cursor)
    assert again["reset"] and [e["step"] for e in again["evals"]] == [0, 3] and len(again["samples"]) == 2
    time.sleep(REFRESH_S + 0.05)
    assert logs.get(runs.get("r")).since(cursor) == (cursor, None)  # nothing new
