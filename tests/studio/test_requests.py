"""Requests the server refuses: bad fields (a 400 naming the field), malformed JSON, an oversize body, another
site's Host name, an unknown route."""

import pytest

from studiohelp import USER_X, error_of


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
