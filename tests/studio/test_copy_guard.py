"""The privacy guard (--max-copied) and the copied-span highlight's API: a model trained until it recites a
planted line never hands out more than N characters of it in a row, streamed or not, completion or chat, even
when the prompt carries the line's first half; the spans field and the source endpoint behind the highlight."""

import json

import httpx
import pytest

from bricklm.cli import main
from bricklm.errors import UserError
from bricklm.storage.copying import COPYING
from bricklm.studio import create_app
from bricklm.text.copyindex import CopyIndex
from conftest import PLANTED, serving
from studiohelp import error_of

N = 12  # the guard's limit in these tests: above the planted corpus's chance length (5), far below the line


@pytest.fixture(scope="module")
def planted(planted_runs):
    return planted_runs


def longest_copied(runs, text: str) -> int:
    with CopyIndex.open(runs / "planted" / COPYING) as index:
        return int(index.matches(text)[0].max(initial=0))


@pytest.fixture(scope="module")
def guarded(planted):
    app = create_app(planted, max_copied=N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http, app.state.studio


def read_events(r):
    """A streamed answer's chunks, without the closing [DONE]."""
    return [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]


def completion(http, prompt, stream=False, **extra):
    body = {"model": "planted@last", "prompt": prompt, "max_tokens": 120, "temperature": 0, "stream": stream}
    return http.post("/v1/completions", json=body | extra)


def test_unguarded_the_model_recites_the_planted_line(planted):
    app = create_app(planted)
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        text = completion(http, PLANTED[:28]).json()["choices"][0]["text"]
    assert PLANTED[28:] in text  # what the guard is there to stop


@pytest.mark.parametrize("prompt", ["", "my bank", PLANTED[:28], PLANTED[: N - 2], PLANTED])
@pytest.mark.parametrize("stream", [False, True])
def test_no_completion_carries_more_than_n_characters_of_the_training_text(guarded, planted, prompt, stream):
    http, _ = guarded
    for temperature, seed in ((0, None), (1.0, 3)):
        r = completion(http, prompt, stream, temperature=temperature, seed=seed)
        assert r.status_code == 200
        if stream:
            events = list(read_events(r))
            text = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
        else:
            text = r.json()["choices"][0]["text"]
        assert text and longest_copied(planted, text) <= N
        # Counted from the prompt: its last N characters and the text together hold no longer span.
        assert longest_copied(planted, prompt[-N:] + text) <= N


@pytest.mark.parametrize("stream", [False, True])
def test_no_chat_reply_carries_more_than_n_characters(guarded, planted, stream):
    http, _ = guarded
    for question in ("pin?", PLANTED[:19]):
        body = {"model": "chat@last", "messages": [{"role": "user", "content": question}], "stream": stream}
        r = http.post("/v1/chat/completions", json=body | {"max_tokens": 20, "temperature": 0})
        assert r.status_code == 200
        if stream:
            text = "".join(e["choices"][0]["delta"].get("content", "") for e in read_events(r) if e.get("choices"))
        else:
            text = r.json()["choices"][0]["message"]["content"]
        assert longest_copied(planted, question[-N:] + text) <= N


def test_unguarded_the_chat_model_answers_with_the_line(planted):
    app = create_app(planted)
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        body = {
            "model": "chat@last",
            "messages": [{"role": "user", "content": "pin?"}],
            "max_tokens": 20,
            "temperature": 0,
        }
        reply = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert longest_copied(planted, reply) > N


@pytest.mark.parametrize("stream", [False, True])
def test_a_guard_that_cannot_steer_stops_with_content_filter(guarded, stream):
    http, studio = guarded
    studio.copying.tries = 0  # no second pick: the first refused token ends the text
    try:
        r = completion(http, PLANTED[:N], stream)
    finally:
        studio.copying.tries = 4
    if stream:
        finish = [e["choices"][0]["finish_reason"] for e in read_events(r) if e.get("choices")][-1]
    else:
        finish = r.json()["choices"][0]["finish_reason"]
    assert finish == "content_filter"


def test_a_run_without_its_index_is_refused(guarded, planted, capsys):
    http, _ = guarded
    r = http.post("/v1/completions", json={"model": "bare", "prompt": "my", "max_tokens": 5})
    assert r.status_code == 403 and "no copying index" in error_of(r)
    assert r.json()["error"]["code"] == "copy_guard_unavailable"
    with pytest.raises(UserError, match="copying index"):
        create_app(planted / "bare", single_run=True, max_copied=N)
    assert main(["serve", "--run", str(planted / "bare"), "--port", "0", "--max-copied", str(N)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error:") and err.count("\n") == 1


def test_n_below_chance_is_refused_with_the_number(planted, capsys):
    with CopyIndex.open(planted / "planted" / COPYING) as index:
        chance = index.chance_length
    assert 1 < chance < N
    with pytest.raises(UserError, match=f"below {chance}"):
        create_app(planted, max_copied=chance - 1)
    create_app(planted / "planted", single_run=True, max_copied=chance)  # at chance itself: served
    for value in (str(chance - 1), "lots", "0"):
        code = main(["serve", "--run", str(planted / "planted"), "--port", "0", "--max-copied", value])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("bricklm: error:") and err.count("\n") == 1
        assert (str(chance) in err) if value.isdigit() and value != "0" else ("--max-copied" in err)


# --- the highlight: the spans field and the source endpoint ------------------------------------------------


@pytest.fixture(scope="module")
def studio_http(planted):
    with serving(create_app(planted)) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


@pytest.mark.parametrize("stream", [False, True])
def test_return_copied_lists_the_spans_and_the_source_shows_them(studio_http, stream):
    r = completion(studio_http, PLANTED[:28], stream, return_copied=True)
    if stream:
        events = [e for e in read_events(r) if e.get("choices")]
        last, text = events[-1]["choices"][0], "".join(e["choices"][0]["text"] for e in events)
    else:
        last = r.json()["choices"][0]
        text = last["text"]
    copied = last["copied"]
    assert copied["available"] and copied["min_span"] >= 32 and copied["longest"] >= len(PLANTED) - 28
    span = copied["spans"][0]
    assert span["start"] == 0 and span["length"] >= 32 and span["document"].endswith(".txt")
    shown = text[span["start"] : span["start"] + span["length"]]
    source = studio_http.get(
        "/api/source", params={"model": "planted@last", "position": span["position"], "length": 40}
    )
    assert source.status_code == 200
    excerpt = source.json()
    assert excerpt["text"] == shown[:40] and excerpt["document"] == span["document"]
    assert len(excerpt["before"]) <= 400 and len(excerpt["after"]) <= 400


def test_the_source_endpoint_is_bounded_and_stays_in_the_folder(studio_http, guarded, planted):
    assert studio_http.get("/api/source", params={"model": "planted", "position": 10**9}).status_code == 400
    assert (
        studio_http.get("/api/source", params={"model": "planted", "position": 0, "length": 10**6}).status_code == 400
    )
    assert studio_http.get("/api/source", params={"model": "../outside", "position": 0}).status_code == 404
    r = studio_http.get("/api/source", params={"model": "bare", "position": 0})
    assert r.status_code == 404 and "copying index" in error_of(r)
    # With the guard on, the training text is not handed out: no excerpts, no document names.
    http, _ = guarded
    assert http.get("/api/source", params={"model": "planted", "position": 0}).status_code == 403
    copied = completion(http, "my", return_copied=True).json()["choices"][0]["copied"]
    assert all(set(s) == {"start", "length"} for s in copied["spans"])
    assert json.loads(http.get("/api/info").text)["max_copied"] == N
    # `bricklm serve` (one run, to share it) shows no training text either, guard or not.
    with serving(create_app(planted / "planted", single_run=True)) as url:
        r = httpx.get(url + "/api/source", params={"model": "planted", "position": 0})
        assert r.status_code == 403 and "bricklm studio" in error_of(r)


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_reply_carries_its_copied_spans_too(studio_http, stream):
    body = {"model": "chat@last", "messages": [{"role": "user", "content": "pin?"}], "max_tokens": 20}
    r = studio_http.post(
        "/v1/chat/completions", json=body | {"temperature": 0, "stream": stream, "return_copied": True}
    )
    last = [e for e in read_events(r) if e.get("choices")][-1] if stream else r.json()
    copied = last["choices"][0]["copied"]
    # The reply ("my bank pin is 4096") is copied, but shorter than a span worth showing (32 characters).
    assert copied["available"] and copied["longest"] >= 19 and copied["spans"] == []
