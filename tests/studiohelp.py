"""Helpers the studio's tests (tests/studio/) share: reading errors and events (their fixtures are in conftest.py)."""

import json

import httpx

USER_X = [{"role": "user", "content": "x"}]


def error_of(r: httpx.Response) -> str:
    return r.json()["error"]["message"]


def read_events(response):
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])
