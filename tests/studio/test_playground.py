"""Look inside, as the playground shows it: the context a generated token saw, attention per head and the
logit lens, and its route."""

import pytest
import torch

from bricklm.model.generate import generate
from bricklm.storage.runs import load_run
from bricklm.studio.inside import context_start, look_inside
from bricklm.studio.models import Served


def test_context_start_replays_generate(tiny_run):
    model = load_run(tiny_run).model
    block = model.config.block_size
    seen = []
    real_forward = model.forward
    model.forward = lambda idx, *a, **k: (seen.append(idx.size(1)), real_forward(idx, *a, **k))[1]
    prompt_len = 5
    list(generate(model, torch.zeros(1, prompt_len, dtype=torch.long), 3 * block, use_cache=False))
    for position, context_len in enumerate(seen, start=prompt_len):
        assert position - context_start(prompt_len, position, block) == context_len


def test_look_inside_agrees_with_the_model(tiny_run):
    run = load_run(tiny_run)
    served = Served("tiny", "best", run.model, run.tokenizer)
    ids = run.tokenizer.encode("The quick brown fox")
    view = look_inside(served, ids, prompt_len=4, position=10)
    with torch.no_grad():
        logits, _ = run.model(torch.tensor([ids[:10]]))
    probs = torch.softmax(logits[0, -1], dim=-1)
    assert view["lens"][-1]["chosen_p"] == pytest.approx(float(probs[ids[10]]), abs=1e-4)
    assert view["lens"][-1]["top"][0]["token"] == run.tokenizer.decode([int(probs.argmax())])
    assert len(view["lens"][-1]["top"]) == 5
    assert [row["layer"] for row in view["lens"]] == ["embedding", "layer 1"]
    (heads,) = view["attention"]
    assert len(heads) == run.model_cfg.n_head and all(len(h) == 10 for h in heads)
    assert all(sum(h) == pytest.approx(1, abs=1e-3) for h in heads)
    assert "".join(view["context"]) == "The quick " and view["token"] == "b"


def test_inside_route(http):
    r = http.post("/api/inside", json={"model": "tiny", "ids": [1, 2, 3, 4], "prompt_len": 2, "position": 3})
    assert r.status_code == 200 and len(r.json()["attention"][0]) == 2
    assert (
        http.post("/api/inside", json={"model": "tiny", "ids": [1, 2], "prompt_len": 1, "position": 5}).status_code
        == 400
    )
    assert (
        http.post("/api/inside", json={"model": "tiny", "ids": [1, 999], "prompt_len": 1, "position": 1}).status_code
        == 400
    )
