"""Export a trained run to Hugging Face `transformers` (a folder), llama.cpp (one GGUF file) or Ollama (a folder).

    export_run("runs/blog", "best", "hf", "exports/blog-hf")          # AutoModelForCausalLM-ready folder
    export_run("runs/blog", "best", "gguf", "exports/blog.gguf")      # llama.cpp
    export_run("runs/blog", "best", "ollama", "exports/blog-ollama")  # model.gguf, Modelfile, README.md

Each is a stock architecture of its runtime (weights.export_architecture: GPT-2's layout, or the
Llama family's for rotary/RMSNorm runs), so no custom code is needed on the other side. A run whose
switches no stock architecture can express is refused with one line before anything is written, as is
--gguf-dtype float16 where the run's activations would overflow it (precision.py). Writes are
atomic: the export is built in a hidden temporary sibling of `out`, then renamed into place, so
`out` is either untouched or complete. An existing `out` is refused unless it is an empty folder,
or `overwrite` is set and it is an earlier bricklm export (an hf folder whose config.json says so,
an ollama folder whose Modelfile does, or a GGUF file); nothing else is ever replaced. See docs/export.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bricklm import __version__
from bricklm.errors import UserError
from bricklm.export.hf import write_hf
from bricklm.export.ollama import GGUF_NAME, write_ollama
from bricklm.export.ollama import MARK as OLLAMA_MARK
from bricklm.export.precision import check_float16
from bricklm.export.vocab import chat_template
from bricklm.export.weights import export_architecture
from bricklm.storage.runs import load_run
from bricklm.text.tokenizer import ChatTokenizer

FORMATS = ("hf", "gguf", "ollama")
GGUF_DTYPES = ("float32", "bfloat16", "float16")  # train's spellings of the dtypes
GGUF_MAGIC = b"GGUF"


def export_run(
    run_dir: str | Path,
    checkpoint: str,
    fmt: str,
    out: str | Path,
    *,
    overwrite: bool = False,
    gguf_dtype: str = "float32",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Export `checkpoint` ('best', 'last' or a step-... directory name) of run_dir as fmt (FORMATS) at out.

    gguf_dtype: the GGUF's matrices (gguf and ollama), float32, bfloat16, or float16 where the run's
    activations on its validation text fit it (precision.py)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if gguf_dtype not in GGUF_DTYPES:
        raise UserError(f"unknown --gguf-dtype {gguf_dtype!r}; use one of: {', '.join(GGUF_DTYPES)}")
    if fmt == "hf" and gguf_dtype != "float32":
        raise UserError("--gguf-dtype is for --format gguf and ollama; the hf folder is float32")
    run_dir, out = Path(run_dir), Path(out)
    if fmt != "hf":
        try:
            from bricklm.export.gguf import write_gguf  # needs the gguf package, an optional extra
        except ModuleNotFoundError as e:
            if e.name != "gguf":
                raise
            raise UserError("--format gguf needs the gguf package: pip install 'gguf>=0.17.1'") from None
    run = load_run(run_dir, checkpoint, "cpu")
    export_architecture(run.model_cfg, str(run_dir), "hf" if fmt == "hf" else "gguf")
    check_destination(out, fmt, overwrite)
    checked = [check_float16(run)] if gguf_dtype == "float16" else []
    provenance = {  # the run's folder name only: a full local path would be published with the export
        "exported_by": f"bricklm {__version__}",
        "run": run_dir.resolve().name,
        "checkpoint": run.checkpoint.name,
    }
    if fmt == "gguf":
        template = chat_template() if isinstance(run.tokenizer, ChatTokenizer) else None
        notes = place_file(out, lambda p: write_gguf(run.model, run.tokenizer, p, provenance, template, gguf_dtype))
    elif fmt == "ollama":
        template = chat_template() if isinstance(run.tokenizer, ChatTokenizer) else None

        def write_folder(d: Path) -> list[str]:
            notes = write_gguf(run.model, run.tokenizer, d / GGUF_NAME, provenance, template, gguf_dtype)
            return notes + write_ollama(run, d, out, provenance)

        notes = place_folder(out, write_folder)
    else:
        notes = place_folder(out, lambda d: write_hf(run.model, run.tokenizer, d, provenance))
    if log:
        log(f"exported {run_dir} ({run.checkpoint.name}) as {fmt} to {out}")
        for note in checked + notes:
            log(f"note: {note}")
    return out


# --- where the export goes -----------------------------------------------------------------------


def is_our_folder(path: Path, fmt: str) -> bool:
    """An earlier bricklm export: an hf folder whose config.json says so, an ollama folder whose Modelfile does."""
    try:
        if fmt == "hf":
            return "bricklm" in json.loads((path / "config.json").read_text(encoding="utf-8"))
        return (path / "Modelfile").read_text(encoding="utf-8").startswith(OLLAMA_MARK)
    except (OSError, ValueError):
        return False


def is_gguf_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def check_destination(out: Path, fmt: str, overwrite: bool) -> None:
    """Refuse, before any work, a destination that would mean destroying something that isn't ours."""
    if not os.path.lexists(out):
        return
    if fmt in ("hf", "ollama"):
        if not out.is_dir() or out.is_symlink():
            raise UserError(f"{out} exists and is not a folder; choose another --out")
        if not any(out.iterdir()):
            return
        if not overwrite:
            raise UserError(f"{out} exists and is not empty; pass --overwrite to replace an earlier export there")
        if not is_our_folder(out, fmt):
            made = "config.json" if fmt == "hf" else "Modelfile"
            raise UserError(f"{out} is not an earlier bricklm export (no {made} from bricklm); not replacing it")
    else:
        if out.is_dir() or out.is_symlink():
            raise UserError(f"{out} exists and is not a plain file; choose another --out")
        if not overwrite:
            raise UserError(f"{out} exists; pass --overwrite to replace an earlier export there")
        if not is_gguf_file(out):
            raise UserError(f"{out} is not a GGUF file; not replacing it")


def usual_permissions(path: Path) -> None:
    """mkdtemp and mkstemp make owner-only entries; an export is meant to be shared, so apply the umask instead."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def place_folder(out: Path, write: Callable[[Path], list[str]]) -> list[str]:
    """write(tmp) fills a hidden sibling folder; then it is renamed to out (an old out is moved aside, then removed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = None
    try:
        notes = write(tmp)
        for f in tmp.iterdir():
            usual_permissions(f)
            fsync_path(f)
        usual_permissions(tmp)
        fsync_path(tmp)
        if os.path.lexists(out):
            old = out.parent / f"{tmp.name.replace('.tmp-', '.old-', 1)}"
            os.rename(out, old)
        os.rename(tmp, out)
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.lexists(out):
            os.rename(old, out)  # put the earlier export back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return notes


def place_file(out: Path, write: Callable[[Path], list[str]]) -> list[str]:
    """write(tmp) writes a hidden sibling file; then it replaces out in one rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        notes = write(tmp)
        usual_permissions(tmp)
        fsync_path(tmp)
        os.replace(tmp, out)
        fsync_path(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return notes
