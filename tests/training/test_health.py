"""`log_health` means the same from Python as from the command line: the Trainer adds the health probe itself."""

from __future__ import annotations

import json

from bricklm.config import ModelConfig, TrainConfig
from bricklm.training.trainer import Trainer


def test_a_trainer_built_in_python_honours_log_health(tiny_corpus, tmp_path):
    model_cfg = ModelConfig(n_layer=1, n_embd=16, n_head=2, block_size=16)
    cfg = dict(max_iters=4, eval_interval=2, eval_iters=2, batch_size=4, sample_chars=0, device="cpu")
    Trainer(model_cfg, TrainConfig(**cfg, log_health=True), tiny_corpus, tmp_path / "on", progress=False).run()
    Trainer(model_cfg, TrainConfig(**cfg), tiny_corpus, tmp_path / "off", progress=False).run()

    def health_steps(run):
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [m["step"] for m in lines if "health" in m]

    assert health_steps(tmp_path / "on") == [0, 2, 4] and health_steps(tmp_path / "off") == []
