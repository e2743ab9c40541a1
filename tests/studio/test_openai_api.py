"""The OpenAI-compatible API: through the official client, its stream format, any checkpoint or snapshot as a
model, and a damaged checkpoint or a model name that tries to leave the runs folder."""

import json
import shutil

import pytest

from studiohelp import error_of


def test_models_are_the_runs_that_have_checkpoints(client):
    ids = {m.id for m in client.models.list()}
    assert {"tiny", "tiny-chat", "sweep/run-01", "sweep/run-02", "trap"} <= ids
    assert "escape" not in ids and not any("stolen" in i for i in ids)
    assert client.models.retrieve("sweep/run-01").id == "sweep/run-01"


def test_completion_through_the_openai_client(client):
    r = client.completions.create(model="tiny", prompt="The ", max_tokens=12, temperature=0.8, seed=7)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert len(r.choices[0].text) == 12 and r.usage.completion_tokens == 12 and r.usage.prompt_tokens == 4
    again = client.completions.create(model="tiny", prompt="The ", max_tokens=12, temperature=0.8, seed=7)
    assert again.choices[0].text == r.choices[0].text  # a seed makes a request repeatable


def test_chat_reply_streams_in_several_chunks_through_the_openai_client(client):
    for seed in range(20):  # a barely fine-tuned model may end its turn at once; some seed lets it talk
        stream = client.chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": "fox?"}],
            max_tokens=8,
            temperature=1.0,
            seed=seed,
            stream=True,
        )
        chunks = list(stream)
        content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        if len(content) >= 2:
            break
    assert len(content) >= 2, "no reply came in more than one chunk"
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert len({c.id for c in chunks}) == 1


def test_client_errors_unknown_model_404_oversize_400_base_run_chat_400(client):
    import openai

    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-run", prompt="a", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="a", max_tokens=5000)
    assert "max_tokens" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert "bricklm finetune" in str(e.value)


def test_stream_is_openai_chunks_then_usage_then_done(http):
    body = {
        "model": "tiny",
        "prompt": "The ",
        "max_tokens": 9,
        "stream": True,
        "stream_options": {"include_usage": True},
        "return_token_ids": True,
    }
    with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[0]["prompt_token_ids"] and len(chunks[0]["prompt_token_ids"]) == 4
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 9
    text = "".join(ch["text"] for c in chunks for ch in c["choices"])
    ids = [i for c in chunks for ch in c["choices"] for i in ch.get("token_ids", [])]
    assert len(text) == 9 and len(ids) == 9
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_any_checkpoint_or_snapshot_is_a_model(http, runs_root):
    for model in ("tiny@last", "tiny@step-000000003", "tiny@loss-4.00"):
        r = http.post("/v1/completions", json={"model": model, "prompt": "a", "max_tokens": 3})
        assert r.status_code == 200, r.text
    r = http.post("/v1/completions", json={"model": "tiny@step-000000999", "prompt": "a", "max_tokens": 3})
    assert r.status_code == 404 and "step-000000999" in error_of(r)


def test_stop_strings_cut_the_text(http):
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 40, "seed": 3})
    text = r.json()["choices"][0]["text"]
    stop = text[5:7]
    r = http.post(
        "/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 40, "seed": 3, "stop": [stop]}
    )
    choice = r.json()["choices"][0]
    assert choice["text"] == text[: text.index(stop)] and choice["finish_reason"] == "stop"


def test_a_damaged_checkpoint_is_a_clear_error_and_breaks_nothing_else(http, runs_root, tiny_run):
    run = runs_root / "damaged"
    shutil.copytree(tiny_run, run)
    weights = run / "checkpoints" / "step-000000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut short, as a disk full mid-copy would
    try:
        r = http.post("/v1/completions", json={"model": "damaged", "prompt": "a", "max_tokens": 2})
        assert r.status_code == 500 and "model.safetensors" in error_of(r) and "damaged" in error_of(r)
        r = http.post("/v1/completions", json={"model": "damaged@step-000000003", "prompt": "a", "max_tokens": 2})
        assert r.status_code == 200
        assert http.get("/api/runs").status_code == 200 and http.get("/health").json()["status"] == "ok"
    finally:
        shutil.rmtree(run)


@pytest.mark.parametrize(
    "model",
    [
        "../tiny",
        "/etc/passwd",
        "tiny/../tiny-chat",
        "escape",
        "tiny@../../outside",
        "tiny@step-000000003/..",
        "%2e%2e%2ftiny",
        "tiny@/etc",
        "sweep/../tiny",
    ],
)
def test_model_names_never_escape(http, model):
    r = http.post("/v1/completions", json={"model": model, "prompt": "a", "max_tokens": 2})
    assert r.status_code == 404, r.text
