"""metrics.jsonl read whole (read_metrics) and as it grows (LogTail): the same records, the same checks."""

import json
import os

import pytest

from bricklm.errors import UserError
from bricklm.storage import metrics
from bricklm.storage.metrics import METRICS, LogTail, append_record, read_metrics

STEP = {"step": 1, "loss": 3.5, "lr": 0.001, "time": 0.5}
EVAL = {"step": 2, "eval": True, "train_loss": 3.1, "val_loss": 3.2}


def write(path, *lines: str) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_a_tail_reads_the_records_read_metrics_reads(tmp_path):
    log = tmp_path / METRICS
    write(log, json.dumps(STEP), '{"step": 2, "lo', json.dumps(EVAL), json.dumps({"step": 2, "health": {}}))
    tail = LogTail(lambda: log)
    assert tail.read() == (False, read_metrics(tmp_path))  # the torn line dropped by both
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 2]


@pytest.mark.parametrize(
    "damaged",
    ["[1]", '{"step": "x"}', '{"step": 1, "loss": "low"}', '{"step": true}', '{"step": 2, "eval": true}'],
)
def test_a_damaged_line_is_refused_by_read_metrics_and_skipped_by_a_tail(tmp_path, damaged):
    log = tmp_path / METRICS
    write(log, json.dumps(STEP), damaged, json.dumps(EVAL))
    with pytest.raises(UserError, match=f"{log} line 2"):
        read_metrics(tmp_path)
    assert LogTail(lambda: log).read() == (False, [STEP, EVAL])


def test_a_tail_reads_only_new_whole_lines(tmp_path):
    log = tmp_path / METRICS
    tail = LogTail(lambda: log)
    assert tail.read() == (False, [])  # no file yet
    append_record(tmp_path, STEP)
    with open(log, "a") as fh:
        fh.write(json.dumps(EVAL)[:10])  # the trainer is halfway through a line
    assert tail.read() == (False, [STEP])
    with open(log, "a") as fh:
        fh.write(json.dumps(EVAL)[10:] + "\n")
    assert tail.read() == (False, [EVAL])
    assert tail.read() == (False, [])


def test_a_tail_reads_a_bounded_amount_each_time(tmp_path, monkeypatch):
    log = tmp_path / METRICS
    records = [{**STEP, "step": i} for i in range(1, 101)]
    write(log, *(json.dumps(r) for r in records))
    monkeypatch.setattr(metrics, "READ_CHUNK", log.stat().st_size // 4 + 1)
    tail = LogTail(lambda: log)
    got = [tail.read()[1] for _ in range(4)]
    assert all(0 < len(part) < len(records) for part in got)
    assert [r for part in got for r in part] == records


def test_a_tail_starts_over_when_the_file_is_replaced_shrinks_or_goes(tmp_path):
    log = tmp_path / METRICS
    write(log, json.dumps(STEP), json.dumps(EVAL))
    tail = LogTail(lambda: log)
    assert tail.read() == (False, [STEP, EVAL])
    fresh = tmp_path / "fresh.jsonl"
    write(fresh, json.dumps(STEP))
    os.replace(fresh, log)  # as `--resume` rewrites the log: a new file renamed into place
    assert tail.read() == (True, [STEP])
    log.write_text("")  # the same file, cut short
    assert tail.read() == (True, [])
    append_record(tmp_path, EVAL)
    assert tail.read() == (False, [EVAL])
    log.unlink()
    assert tail.read() == (True, [])
    assert LogTail(lambda: None).read() == (False, [])  # a path refused by whoever names it: missing
