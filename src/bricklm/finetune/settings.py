"""Which settings a fine-tune runs with: its own (FinetuneConfig), the model's and training's; new or resumed.

    setup = resolve_settings(source="runs/blog", overrides={"lora_rank": 8, "max_iters": 100})
    setup = resolve_settings(FinetuneConfig(data="chats.jsonl"), source="runs/blog", recipe="ft.toml")
    setup = resolve_settings(resume="runs/blog-chat", overrides={"data": "more.jsonl", "max_iters": 600})

overrides holds settings by field name, exactly as the flags give them (FinetuneConfig's and TrainConfig's; a
ModelConfig field is refused: a fine-tuned model keeps its pretrained run's shape). Everything is merged by
recipes.py, in the order of every other command:

    a new fine-tune   FinetuneConfig's defaults (or `config`) < the recipe's [finetune] table < overrides
                      TrainConfig's defaults < the source run's device, threads and dtype
                        < FinetuneConfig.train_defaults() < the recipe's [train] table < overrides
    a resume          the run's config.json (its finetune and train tables) < the recipe < overrides

A resumed run keeps what it began with (the source, the folder and KEPT_ON_RESUME): giving one is refused,
and a recipe may repeat one but not change it. Each config is checked by its validate(), naming the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bricklm.config import FinetuneConfig, ModelConfig, TrainConfig, section_of
from bricklm.errors import UserError
from bricklm.fields import field_names
from bricklm.recipes import build, merge, resolve_table
from bricklm.storage.runs import LoadedRun, load_run, read_run_config

# Fixed once training began: the adapters' shapes and scale, the vocabulary, which conversations are held out.
KEPT_ON_RESUME = ("lora_rank", "lora_alpha", "unknown_chars", "heldout_fraction")
INHERITED = ("device", "threads", "dtype")  # train settings a new fine-tune takes from its source run


@dataclass
class Setup:
    """What finetune() starts from: the three configs, the run directory and, for a new run, the pretrained run."""

    config: FinetuneConfig
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    run_dir: Path
    source_run: LoadedRun | None  # None when resuming: the weights come from the run's own checkpoint
    table: dict[str, Any]  # config.json's finetune table: where the run came from, then config's fields


def resolve_settings(
    config: FinetuneConfig | None = None,
    *,
    source: str | Path | None = None,
    checkpoint: str | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Setup:
    """The settings of a new fine-tune of `source` (config: FinetuneConfig's values to start from instead of its
    defaults), or of resuming the fine-tuning run `resume`; see the module's docstring for the order."""
    overrides = dict(overrides or {})
    shape = [key for key in overrides if section_of(key) == "model"]
    if shape:
        raise UserError(f"--{shape[0].replace('_', '-')}: a fine-tuned model keeps its pretrained run's shape")
    own = {key: overrides.pop(key) for key in list(overrides) if key in field_names(FinetuneConfig)}
    if resume:
        return _resumed(Path(resume), config, source, checkpoint, out, recipe, own, overrides)
    if not source:
        raise UserError("give --from RUN (a trained run) or --resume RUN2")
    cfg = resolve_table(FinetuneConfig, "finetune", asdict(config) if config is not None else None, recipe, own)
    source_run = load_run(source, checkpoint or "best")
    check_width(cfg, source_run.model_cfg.n_embd)
    cfg = replace(cfg, lora_alpha=cfg.alpha)  # the scale as used, so config.json says it
    inherited = {k: v for k, v in asdict(source_run.train_cfg).items() if k in INHERITED}
    train_cfg = _train_config({**inherited, **cfg.train_defaults()}, recipe, overrides)
    run_dir = Path(out or f"{str(source).rstrip('/')}-chat")
    table = {"from": str(source), "from_checkpoint": str(source_run.checkpoint), **asdict(cfg)}
    return Setup(cfg, replace(source_run.model_cfg), train_cfg, run_dir, source_run, table)


def check_width(cfg: FinetuneConfig, width: int) -> None:
    """LoRA's rank against the model's width (n_embd), which only the pretrained run knows."""
    if cfg.lora_rank > width:  # past the width a rank adapts nothing more and costs rank x width parameters a layer
        raise UserError(
            f"--lora-rank {cfg.lora_rank} is more than the model's width (n_embd {width}); give at most {width} "
            "(finetune.lora_rank)"
        )


def _resumed(run_dir: Path, config, source, checkpoint, out, recipe, own: dict, train_flat: dict) -> Setup:
    given = {"--from": source, "--checkpoint": checkpoint, "a FinetuneConfig": config}
    given.update({f"--{key.replace('_', '-')}": value for key, value in own.items() if key in KEPT_ON_RESUME})
    if out is not None and Path(out).resolve() != run_dir.resolve():
        given["--out"] = out
    refused = [name for name, value in given.items() if value is not None]
    if refused:
        raise UserError(
            f"{' and '.join(refused)} cannot be used with --resume: a resumed fine-tuning run keeps the source, "
            f"the folder and the settings it started with (in {run_dir / 'config.json'})"
        )
    saved = read_run_config(run_dir)
    if "finetune" not in saved:
        raise UserError(f"{run_dir} is not a fine-tuning run; resume it with `bricklm train --resume`")
    path = run_dir / "config.json"
    base = {k: v for k, v in saved["finetune"].items() if k in field_names(FinetuneConfig)}  # not "from", ...
    try:
        kept = build(FinetuneConfig, base, "finetune")
        model_cfg = build(ModelConfig, saved["model"], "model")
        check_width(kept, model_cfg.n_embd)
    except KeyError:
        raise UserError(f"{path} has no model table; the run's config is damaged") from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}; the run's config is damaged") from None
    kept = replace(kept, lora_alpha=kept.alpha)
    cfg = resolve_table(FinetuneConfig, "finetune", base, recipe, own)
    cfg = replace(cfg, lora_alpha=cfg.alpha)
    for key in KEPT_ON_RESUME:  # only the recipe can have changed one: the flags were refused above
        if getattr(cfg, key) != getattr(kept, key):
            raise UserError(
                f"finetune.{key} = {getattr(cfg, key)!r} in {recipe} cannot change a resumed fine-tuning run's "
                f"{getattr(kept, key)!r} (in {path})"
            )
    known = field_names(TrainConfig)  # a saved run may hold keys of an older bricklm
    train_cfg = _train_config({k: v for k, v in saved.get("train", {}).items() if k in known}, recipe, train_flat)
    # A table saved by an older bricklm keeps its own keys: a setting added since is written only if it was set.
    defaults = asdict(FinetuneConfig())
    changed = {k: v for k, v in asdict(cfg).items() if k in saved["finetune"] or v != defaults[k]}
    return Setup(cfg, model_cfg, train_cfg, run_dir, None, {**saved["finetune"], **changed})


def _train_config(base: dict[str, Any], recipe, flat: dict[str, Any]) -> TrainConfig:
    """base < the recipe's [train] table < flat, through the one merge."""
    return build(TrainConfig, merge({"train": base}, recipe, flat, where="overrides")["train"], "train")
