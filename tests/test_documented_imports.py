"""Every import and dotted name that the README, docs/ and the notebook show a reader resolves.

The code moved into folders once (issue 25); a reader copying `from bricklm.storage.runs import load_run`
from a page must get a working import, so each page is read for `from bricklm... import ...`,
`import bricklm...` and `bricklm.pkg.name` written in backticks, and each name is imported here.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FROM = re.compile(r"from (bricklm(?:\.\w+)*) import ([\w, ()]+)")
IMPORT = re.compile(r"^\s*import (bricklm(?:\.\w+)*)", re.M)
DOTTED = re.compile(r"`(bricklm(?:\.\w+)+)[(`]")


def page_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return path.read_text(encoding="utf-8")


def documented_names(text: str) -> set[str]:
    """'module:name' for each imported name, 'module:' for a plain import, 'dotted.path' for a dotted name."""
    names = set()
    for module, imported in FROM.findall(text):
        for name in imported.replace("(", "").replace(")", "").split(","):
            if name.strip():
                names.add(f"{module}:{name.strip().split(' as ')[0]}")
    names |= {f"{module}:" for module in IMPORT.findall(text)}
    names |= set(DOTTED.findall(text))
    return names


def resolves(name: str) -> bool:
    if ":" in name:
        module, attr = name.split(":")
        return not attr or hasattr(importlib.import_module(module), attr)
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest prefix that is a module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "notebooks").glob("*.ipynb")])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_import_resolves(page):
    missing = sorted(n for n in documented_names(page_text(page)) if not resolves(n))
    assert missing == []


def test_the_reader_finds_imports_and_can_fail():
    text = "from bricklm.storage.runs import load_run, nope\n`bricklm.export.export_run(run)` and `bricklm.nothing.x`"
    names = documented_names(text)
    assert names == {
        "bricklm.storage.runs:load_run",
        "bricklm.storage.runs:nope",
        "bricklm.export.export_run",
        "bricklm.nothing.x",
    }
    assert [n for n in sorted(names) if not resolves(n)] == ["bricklm.nothing.x", "bricklm.storage.runs:nope"]
