"""A run's config.json and summary.json: read and checked once, for the commands and the studio alike."""

import json

import pytest

from bricklm.errors import UserError
from bricklm.storage.runs import CONFIG, SUMMARY, check_run_config, read_json_object, read_run_config, read_summary


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"{", "is not readable JSON"),
        (b'{"a": "\xff"}', "is not readable JSON"),
        (b"[]", "is not a JSON object"),
        (b'{"pad": "' + b"x" * 100 + b'"}', "is over 64 bytes"),
    ],
)
def test_a_json_file_that_is_not_a_small_object_is_named(tmp_path, data, needle):
    path = tmp_path / "x.json"
    path.write_bytes(data)
    with pytest.raises(UserError, match=needle) as e:
        read_json_object(path, "record", max_bytes=64)
    assert str(path) in str(e.value)
    with pytest.raises(UserError, match="not found"):
        read_json_object(tmp_path / "missing.json", "record")


def test_the_checks_are_the_same_on_json_read_another_way(tiny_run):
    config = json.loads((tiny_run / CONFIG).read_text())
    assert check_run_config(config, tiny_run / CONFIG) == read_run_config(tiny_run)
    damaged = {**config, "train": {**config["train"], "batch_size": "8"}}
    with pytest.raises(UserError, match="batch_size") as e:
        check_run_config(damaged, tiny_run / CONFIG)
    assert str(tiny_run / CONFIG) in str(e.value)
    assert read_summary(tiny_run)["steps"] == 6 and (tiny_run / SUMMARY).is_file()
