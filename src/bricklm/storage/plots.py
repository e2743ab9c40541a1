"""Matplotlib figures (Agg backend: no screen needed), each written straight to a PNG file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402

from bricklm.errors import UserError  # noqa: E402


def plot_loss(metrics: list[dict[str, Any]], path: str | Path, title: str = "loss") -> Path:
    """Per-step training loss (faint), evaluated train and val loss (bold) against step."""
    steps = [m["step"] for m in metrics if "loss" in m]
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m for m in metrics if m.get("eval")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if steps:
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (each step)")
    if evals:
        ax.plot(
            [m["step"] for m in evals], [m["train_loss"] for m in evals], "o-", color="tab:blue", label="train (eval)"
        )
        ax.plot(
            [m["step"] for m in evals], [m["val_loss"] for m in evals], "o-", color="tab:orange", label="val (eval)"
        )
    return finish_loss_axes(fig, ax, title, path)


def finish_loss_axes(fig, ax, title: str, path: str | Path) -> Path:
    """The labels, grid and legend every loss-against-step figure shares, then save."""
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    # A run's name that isn't UTF-8 (lone surrogates) crashes the font renderer: show it escaped.
    ax.set_title(title.encode("utf-8", "backslashreplace").decode("utf-8"))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing to plot yet (a run stopped in its first evaluation): no legend
        ax.legend()
    return save(fig, path)


def plot_path(path: str | Path) -> Path:
    """Where a figure asked to go to `path` is written: a name without a suffix gets .png (as matplotlib would add
    it, so the caller can say the real name); a suffix matplotlib can't write is a UserError."""
    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise UserError(f"cannot write a plot as {path}: use .png (or one of .{', .'.join(sorted(formats))})")
    return path


def save(fig, path: str | Path) -> Path:
    """Write fig to plot_path(path) and return that path."""
    try:
        path = plot_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
