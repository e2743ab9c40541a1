"""Look inside a generated token: the model's own trace, no hooks, every kind of block."""

import pytest
import torch

from bricklm.config import ModelConfig
from bricklm.model.gpt import GPT
from bricklm.studio.inside import look_inside
from bricklm.studio.models import Served
from bricklm.text.tokenizer import CharTokenizer

TEXT = "the quick brown fox jumps over the lazy dog"


def served(**switch) -> Served:
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16, **switch)
    return Served("tiny", "best", GPT(cfg).eval(), tok)


def test_look_inside_adds_no_hooks_to_the_shared_model(monkeypatch):
    """Other threads generate with the same model: a hook added here would see their passes too."""

    def refuse(*args, **kwargs):
        raise AssertionError("look_inside registered a hook on the shared model")

    for name in ("register_forward_hook", "register_forward_pre_hook"):
        monkeypatch.setattr(torch.nn.Module, name, refuse)
    s = served()
    view = look_inside(s, s.tokenizer.encode(TEXT[:20]), prompt_len=4, position=12)
    # block 8: at position 9 the context outgrew the window and kept its newest 5 (ids[4:9]), then grew again
    assert view["context_start"] == 4 and len(view["context"]) == 8 and len(view["attention"]) == 2


@pytest.mark.parametrize("switch", [{"attention": "none"}, {"residual": "bug"}, {"positional": "rope"}])
def test_look_inside_follows_the_models_switches(switch):
    s = served(**switch)
    ids = s.tokenizer.encode(TEXT[:12])
    view = look_inside(s, ids, prompt_len=3, position=7)
    with torch.no_grad():
        logits, _ = s.model(torch.tensor([ids[:7]]))
    assert view["lens"][-1]["chosen_p"] == pytest.approx(float(torch.softmax(logits[0, -1], -1)[ids[7]]), abs=1e-4)
    if switch.get("attention") == "none":
        assert view["attention"] == [None, None]
    else:
        assert all(len(heads) == 2 and all(len(h) == 7 for h in heads) for heads in view["attention"])
