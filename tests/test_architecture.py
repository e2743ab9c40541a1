"""The shape of the code base, kept by a test: imports point one way, modules stay small, argparse stays in cli/.

The import graph is read from the source (ast), so these hold without importing anything:
- no import cycle among bricklm's modules;
- imports point down the layers (docs/architecture.md draws them): the base modules directly under
  bricklm/ (config, errors, files), then the core folders text/, model/, storage/, training/ in that
  order, then the feature packages, then cli/; a folder never imports one above it, so no two folders
  form a cycle, and the feature packages import each other without a cycle;
- at most MAX_LAZY imports of bricklm itself written inside functions (each one is a cycle in hiding);
- no module over MAX_MODULE_LINES lines, no class over MAX_CLASS_LINES;
- argparse only under cli/;
- no formatter skip markers (the formatter decides layout: split by concept rather than squeeze);
- no machine's own path in the source, the tests, the benchmarks or dev/;
- the model's switches (ModelConfig's attention, positional, norm, ...) are read only by the model code and
  the few places that check, set, name, map or key on them (SWITCH_READERS): everything else asks the model.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "bricklm"
CLI = "cli"
BASE = "base"
CORE = (BASE, "text", "model", "storage", "training")  # bottom to top
MAX_LAZY, MAX_MODULE_LINES, MAX_CLASS_LINES = 8, 450, 250
SWITCHES = {
    "attention",
    "positional",
    "norm",
    "residual",
    "activation",
    "qk_norm",
    "tie_weights",
    "bias",
    "ffn_bias",
    "head_bias",
    "zero_init",
}
# The modules that may read a switch, each for its reason. Any other asks the model instead (GPT.trace,
# Attention.weights, forward with caches, count_params, count_activations), so each decision a switch makes
# exists once. Flags need no entry: cli/ makes them from ModelConfig's fields without naming any.
SWITCH_READERS = {
    "bricklm.model.gpt": "the model: builds itself from them, and counts its parameters and activations",
    "bricklm.model.attention": "the model's attention: its kind, QK-norm, rotary positions, biases",
    "bricklm.config": "defines them and refuses combinations that cannot work",
    "bricklm.recipes": "reads a saved run's or a recipe's old spellings of them (residual as two switches)",
    "bricklm.experiments.plan": "sets them for ablations, and names the base model's in its label",
    "bricklm.training.tuning": "the tuner measures a kernel for attention = auto and keys its cache on the shape",
    "bricklm.export.weights": "checks that a model fits GPT-2's layout before mapping its weights",
    "bricklm.export.llama": "maps rotary/RMSNorm models onto Arcee, Llama or Qwen3 (gated MLP, QK-norm, biases, tying)",
    "bricklm.export.hf": "maps them onto transformers' config (activation, tied embeddings)",
}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported bricklm module, written inside a function?) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bricklm"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("bricklm")]
        resolved = set()
        for name in names:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known:
                resolved.add(name)
        found += [(name, id(node) in inside) for name in sorted(resolved)]  # one import statement counts once
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {t for t, _ in imports(path, set(mods))} - {name} for name, path in mods.items()}


def area(module: str) -> str:
    """The folder a module lives in ('training' for bricklm.training.trainer, 'cli' for bricklm.cli.train,
    'studio' for a feature's module), or 'base' for the modules directly under bricklm/."""
    if module == "bricklm.__main__":  # `python -m bricklm` is the command line
        return CLI
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else BASE


def rank(folder: str) -> int:
    """Height of a folder in the layers: base 0 … training 4, every feature package 5, cli 6."""
    return CORE.index(folder) if folder in CORE else len(CORE) + (folder == CLI)


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports that point up the layers (a feature importing a feature is level, not up)."""
    return sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs if rank(area(b)) > rank(area(a)))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(graph()) == []


def folder_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for src, targets in edges.items():
        out.setdefault(area(src), set()).update(area(t) for t in targets if area(t) != area(src))
    return out


def test_imports_point_down_the_layers_and_folders_form_no_cycle():
    edges = graph()
    assert upward(edges) == []
    assert cycles(folder_graph(edges)) == []


def test_few_imports_hide_inside_functions():
    mods = modules()
    lazy = [f"{name} imports {t}" for name, path in mods.items() for t, inside in imports(path, set(mods)) if inside]
    assert len(lazy) <= MAX_LAZY, lazy


def test_modules_and_classes_stay_small():
    big = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            big.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                big.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert big == []


def test_only_the_cli_knows_argparse():
    users = [
        name
        for name, path in modules().items()
        if area(name) != CLI and re.search(r"^\s*(import argparse|from argparse)", path.read_text(), re.M)
    ]
    assert users == []


def fmt_skips(paths) -> list[str]:
    marker = "fmt: " + "skip"  # built from pieces so this file doesn't match itself
    return [f"{p}:{n}" for p in paths for n, line in enumerate(p.read_text().splitlines(), 1) if marker in line]


def test_the_formatter_decides_layout():
    assert fmt_skips(p for folder in ("src", "tests", "benchmarks", "dev") for p in (ROOT / folder).rglob("*.py")) == []


def test_no_machine_paths():
    # Built from pieces so this file doesn't match itself.
    pattern = re.compile("(" + "|".join(["/" + "work/", "/" + "home/", "/" + "Users/", "/" + "root/"]) + ")")
    found = []
    for folder in ("src", "tests", "benchmarks", "dev"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}")
    assert found == []


def config_names(tree: ast.AST) -> set[str]:
    """Local names that hold a config: assigned from `...config` / `...cfg`, or parameters annotated ModelConfig."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and re.search(r"(config|cfg)$", ast.unparse(node.value)):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif (
            isinstance(node, ast.arg) and node.annotation is not None and "ModelConfig" in ast.unparse(node.annotation)
        ):
            names.add(node.arg)
    return names


def switch_reads(path: Path) -> list[str]:
    """Where a file reads a model switch: `x.residual`, `x["residual"]`, `getattr(x, "residual")`, `x.get(...)`.

    A method call (`t.norm()`) is not a read; `.bias` is also every Linear's own bias tensor, so it counts only
    when read from a config (`model.config.bias`, `cfg.bias`, `c.bias` after `c = model.config`).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    configs = config_names(tree)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute) and node.attr in SWITCHES and id(node) not in called:
            obj = ast.unparse(node.value)
            if node.attr != "bias" or re.search(r"(config|cfg)$", obj) or obj in configs:
                name = node.attr
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            name = node.slice.value
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            name = node.args[1].value if ast.unparse(node.func) == "getattr" else None
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.args[0].value if ast.unparse(node.func).endswith(".get") else name
        if isinstance(name, str) and name in SWITCHES:
            found.append(f"{path.name}:{node.lineno} reads {name}")
    return found


def unlisted_switch_readers(mods: dict[str, Path]) -> dict[str, list[str]]:
    """Modules outside SWITCH_READERS that read a switch, with where."""
    reads = {name: switch_reads(path) for name, path in mods.items() if name not in SWITCH_READERS}
    return {name: found for name, found in reads.items() if found}


def test_only_the_model_computes_with_its_switches():
    mods = modules()
    assert unlisted_switch_readers(mods) == {}
    # The list stays as short as the code: an entry that no longer reads a switch (or no longer exists) goes.
    assert [name for name in SWITCH_READERS if name not in mods or not switch_reads(mods[name])] == []


def test_the_checks_themselves_can_fail(tmp_path):
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert area("bricklm.training.trainer") == "training" and area("bricklm.cli.train") == CLI
    assert area("bricklm.inspect.probe") == "inspect" and area("bricklm.config") == BASE
    assert upward({"bricklm.model.gpt": {"bricklm.training.optim"}}) == ["bricklm.model.gpt -> bricklm.training.optim"]
    assert upward({"bricklm.studio.app": {"bricklm.cli"}}) == ["bricklm.studio.app -> bricklm.cli"]
    assert upward({"bricklm.studio.app": {"bricklm.inspect.probe", "bricklm.model.gpt"}}) == []
    both_ways = {"bricklm.studio.a": {"bricklm.export.b"}, "bricklm.export.b": {"bricklm.studio.a"}}
    assert cycles(folder_graph(both_ways)) == [["export", "studio"]]
    squeezed = tmp_path / "squeezed.py"
    squeezed.write_text("x = [1,\n  2]  # fmt: " + "skip\n")
    assert fmt_skips([squeezed]) == [f"{squeezed}:2"]
    reader = tmp_path / "reader.py"
    reader.write_text(
        "def f(block, cfg, c: ModelConfig, lin, t):\n"
        "    a = block.residual, cfg['positional'], getattr(block, 'qk_norm', False), cfg.get('activation')\n"
        "    b = cfg.bias, c.head_bias\n"
        "    d = lin.bias, t.norm(), t['step']  # a Linear's bias, a tensor method, another key: not switches\n"
        "    conf = block.config\n"
        "    return conf.bias\n"
    )
    assert unlisted_switch_readers({"bricklm.studio.reader": reader, "bricklm.config": reader}) == {
        "bricklm.studio.reader": switch_reads(reader)  # listed modules may read; any other may not
    }
    assert sorted(switch_reads(reader)) == [
        "reader.py:2 reads activation",
        "reader.py:2 reads positional",
        "reader.py:2 reads qk_norm",
        "reader.py:2 reads residual",
        "reader.py:3 reads bias",
        "reader.py:3 reads head_bias",
        "reader.py:6 reads bias",
    ]
