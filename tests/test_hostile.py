"""Hostile input to every command: each case of issue 17 ends in one line and an exit code, never a traceback,
and a command that refuses leaves the user's files byte-identical.

The cases follow the issue's sections: data lost or corrupted; tracebacks (file-system errors, NaN
sampling settings, damaged files, Ctrl-C while importing); accepted when it should be refused; small.
docs/reliability.md's "hostile input" table lists them with these test names.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

import exporthelp
from bricklm.cli import main
from bricklm.storage import checkpoint as ckpt
from bricklm.text.data import load_corpus
from conftest import TINY_FLAGS, TINY_TEXT, tiny_flags
from runhelp import copy_run

# --- helpers ------------------------------------------------------------------------------------


def tree(*roots: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under roots, by path: what "byte-identical" compares."""
    out: dict[str, bytes | None] = {}
    for root in roots:
        if root.is_file():
            out[str(root)] = root.read_bytes()
            continue
        for dirpath, _, files in os.walk(root):
            out[dirpath] = None
            for name in files:
                path = Path(dirpath) / name
                out[str(path)] = path.read_bytes()
    return out


def one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    assert err.startswith("bricklm: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def refused(capsys, argv: list[str], *needles: str, keep: tuple[Path, ...] = (), absent: tuple[Path, ...] = ()):
    """Run the command in-process: exit 1, one error line naming `needles`, `keep` byte-identical, `absent` absent."""
    before = tree(*keep)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    one_line_error(err, *needles)
    assert tree(*keep) == before
    for path in absent:
        assert not path.exists(), path
    return out


def cli(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """`python -m bricklm ...` as a user runs it: a real process."""
    cmd = [sys.executable, "-m", "bricklm", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def posts(folder: Path, text: str = TINY_TEXT, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"post{i}.md").write_text(f"# Post {i}\n\n{text}")
    return folder


@pytest.fixture
def afile(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("a file the user keeps\n")
    return path


# --- data lost or corrupted ---------------------------------------------------------------------


BLOCKING_PREPARE = """
import sys, time
from pathlib import Path
from bricklm.text.prepare import prepare

go = Path(sys.argv[3])
def log(*args):
    print(*args, flush=True)
    while str(args[0]).startswith("reading") and not go.exists():  # hold the lock until the test says go
        time.sleep(0.05)
prepare([sys.argv[1]], sys.argv[2], overwrite=True, log=log)
"""


@pytest.mark.slow
def test_two_prepares_into_one_folder_cannot_mix(tmp_path):
    """Two real processes: while one prepares, the other is refused with its pid; the folder ends whole."""
    first, second = posts(tmp_path / "first", "First writer's text. " * 40), posts(tmp_path / "second", "Other! " * 90)
    out, go = tmp_path / "corpus", tmp_path / "go"
    holder = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_PREPARE, str(first), str(out), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().startswith("reading"), holder.stderr.read()  # it holds the lock now
        other = cli("prepare", second, "--out", out, "--overwrite")
        assert other.returncode == 1
        one_line_error(other.stderr, f"{out} is already being prepared by process {holder.pid}")
    finally:
        go.touch()
        _, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, err
    train, val, tok, meta = load_corpus(out)  # every sha256 in meta.json matches: one prepare's files, whole
    assert "First writer's text." in (out / "corpus.txt").read_text() and "Other!" not in tok.decode(train)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "first", "go", "second"]  # no lock, no temp


@pytest.mark.slow
def test_two_prepares_at_once_leave_one_whole_corpus(tmp_path):
    """The issue's reproduction: both started together. Whatever the timing, the folder is one input's, whole."""
    inputs = [posts(tmp_path / "a", "Alpha text here. " * 300), posts(tmp_path / "b", "Beta words there! " * 300)]
    out = tmp_path / "corpus"
    cmds = [[sys.executable, "-m", "bricklm", "prepare", str(src), "--out", str(out), "--overwrite"] for src in inputs]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        if code:
            one_line_error(err, "is already being prepared by process")
    load_corpus(out)
    text = (out / "corpus.txt").read_text()
    assert ("Alpha text" in text) != ("Beta words" in text)


def test_prepare_refuses_a_folder_that_is_not_a_corpus(tmp_path, capsys):
    src = posts(tmp_path / "src")
    novel = tmp_path / "d"
    novel.mkdir()
    (novel / "corpus.txt").write_text("My only copy of my novel.\n")
    for extra in ([], ["--overwrite"]):  # --overwrite replaces a corpus, never a user's files
        refused(capsys, ["prepare", src, "--out", novel, *extra], "--out", "not a bricklm corpus", keep=(novel,))
    (novel / "corpus.txt").unlink()
    (novel / "chapter1.md").write_text("Also mine.\n")
    refused(capsys, ["prepare", src, "--out", novel, "--overwrite"], "it holds chapter1.md", keep=(novel,))


def test_prepare_replaces_a_corpus_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["prepare", str(posts(tmp_path / "one", "First version. " * 50)), "--out", str(out)]) == 0
    capsys.readouterr()
    second = posts(tmp_path / "two", "Second version! " * 50)
    refused(capsys, ["prepare", second, "--out", out], "already holds a corpus", "--overwrite", keep=(out,))
    assert main(["prepare", str(second), "--out", str(out), "--overwrite"]) == 0
    assert "replacing the corpus that was there" in capsys.readouterr().out
    assert "Second version!" in (out / "corpus.txt").read_text()
    load_corpus(out)


def test_a_prepare_cut_short_leaves_the_old_corpus(tmp_path, capsys, monkeypatch):
    """A failure after the new corpus is written (here: the swap's rename) leaves the old corpus as it was."""
    import bricklm.text.prepare as prepare_module

    out = tmp_path / "corpus"
    assert main(["prepare", str(posts(tmp_path / "one")), "--out", str(out)]) == 0
    before = tree(out)

    def crash(tmp, final):
        raise KeyboardInterrupt  # as a Ctrl-C at the worst moment

    monkeypatch.setattr(prepare_module, "swap_in", crash)
    assert main(["prepare", str(posts(tmp_path / "two", "New! " * 99)), "--out", str(out), "--overwrite"]) == 130
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "one", "two"]  # temp folder and lock gone


def test_a_swap_killed_between_its_renames_is_repaired(tmp_path, capsys):
    """kill -9 between the two renames of a swap leaves `.corpus.old-PID`; the next prepare puts it back first."""
    out = tmp_path / "corpus"
    assert main(["prepare", str(posts(tmp_path / "one")), "--out", str(out)]) == 0
    capsys.readouterr()
    aside = tmp_path / ".corpus.old-99999"
    os.replace(out, aside)
    (tmp_path / ".corpus.tmp-99998").mkdir()  # and a half-built one from another killed prepare
    refused(capsys, ["prepare", tmp_path / "one", "--out", out], "already holds a corpus")
    assert not aside.exists() and not (tmp_path / ".corpus.tmp-99998").exists()
    load_corpus(out)


def test_resume_into_another_out_is_refused(tiny_run, tmp_path, capsys):
    other = tmp_path / "b"
    refused(
        capsys, ["train", "--resume", tiny_run, "--out", other], "--resume", "--out", keep=(tiny_run,), absent=(other,)
    )


@pytest.mark.parametrize(
    "damage",
    ["corpus.txt from another prepare", "train.bin edited", "tokenizer.json edited", "ids past the vocabulary"],
)
def test_a_corpus_that_disagrees_with_its_meta_is_named(tiny_corpus, tmp_path, capsys, damage):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    named = damage.split()[0]
    if damage == "corpus.txt from another prepare":
        (corpus / "corpus.txt").write_text("Someone else's text entirely.")
    elif damage == "train.bin edited":
        data = bytearray((corpus / "train.bin").read_bytes())
        data[10] ^= 1
        (corpus / "train.bin").write_bytes(bytes(data))
    elif damage == "tokenizer.json edited":
        tok = json.loads((corpus / "tokenizer.json").read_text())
        tok["chars"][0], tok["chars"][1] = tok["chars"][1], tok["chars"][0]
        (corpus / "tokenizer.json").write_text(json.dumps(tok))
    else:  # meta.json's sha256 forged to match, so only the id check can catch it
        ids = np.fromfile(corpus / "train.bin", dtype="<u2")
        ids[5] = 60000
        ids.tofile(corpus / "train.bin")
        meta = json.loads((corpus / "meta.json").read_text())
        meta["sha256"]["train.bin"] = hashlib.sha256((corpus / "train.bin").read_bytes()).hexdigest()
        (corpus / "meta.json").write_text(json.dumps(meta))
        named = "token id 60000"
    run = tmp_path / "run"
    refused(capsys, ["train", "--data", corpus, "--out", run, *TINY_FLAGS], named, keep=(corpus,), absent=(run,))


# --- tracebacks: file-system errors --------------------------------------------------------------


OUT_COMMANDS = {
    "train": lambda corpus, run, out: ["train", "--data", corpus, "--out", out, *TINY_FLAGS],
    "finetune": lambda corpus, run, out: ["finetune", "--from", run, "--out", out, "--max-iters", "1"],
    "sweep": lambda corpus, run, out: ["sweep", SPEC, "--data", corpus, "--out", out],
    "ablate": lambda corpus, run, out: ["ablate", "--data", corpus, "--out", out, *TINY_FLAGS],
    "bench-devices": lambda corpus, run, out: ["bench-devices", "--data", corpus, "--out", out, "--iters", "1"],
}
SPEC = Path(__file__).resolve().parents[1] / "configs" / "seed" / "sweep.toml"


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
def test_out_naming_an_existing_file_is_refused(tiny_corpus, tiny_run, afile, capsys, command):
    argv = OUT_COMMANDS[command](tiny_corpus, tiny_run, afile)
    refused(capsys, argv, f"--out must be a folder, but {afile} is a file", keep=(afile, tiny_run))


@pytest.mark.parametrize("where", ["through-a-file", "proc"])
@pytest.mark.parametrize("command", ["train", "prepare"])
def test_out_that_cannot_be_created_is_refused(tiny_corpus, afile, tmp_path, capsys, command, where):
    out = afile / "run" if where == "through-a-file" else Path("/proc/bricklm-test/run")
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    argv = (
        ["train", "--data", tiny_corpus, "--out", out, *TINY_FLAGS]
        if command == "train"
        else ["prepare", posts(tmp_path / "src"), "--out", out]
    )
    refused(capsys, argv, f"--out {out}", "cannot be", keep=(afile,))


@pytest.fixture
def read_only(monkeypatch):
    """Folders that behave as on a read-only file system, in-process: os.access and os.statvfs say so, and
    every write under them fails with EROFS (a safety net: nothing may be written even if a check is missed)."""
    roots: list[str] = []

    def under(path) -> bool:
        if isinstance(path, int):
            return False
        real = os.path.realpath(os.fsdecode(path))
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def erofs(path):
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_access, real_statvfs, real_open, real_mkdir = os.access, os.statvfs, os.open, os.mkdir
    real_builtin_open, real_replace = open, os.replace
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def access(path, mode, *a, **k):
        return False if mode & os.W_OK and under(path) else real_access(path, mode, *a, **k)

    def statvfs(path):
        return SimpleNamespace(f_flag=os.ST_RDONLY) if under(path) else real_statvfs(path)

    def os_open(path, flags, *a, **k):
        if flags & writing and under(path):
            raise erofs(path)
        return real_open(path, flags, *a, **k)

    def mkdir(path, *a, **k):
        if under(path):
            raise erofs(path)
        return real_mkdir(path, *a, **k)

    def builtin_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and not isinstance(file, int) and under(file):
            raise erofs(file)
        return real_builtin_open(file, mode, *a, **k)

    def replace(src, dst, *a, **k):
        if under(src) or under(dst):
            raise erofs(dst)
        return real_replace(src, dst, *a, **k)

    for name, fake in [
        ("access", access),
        ("statvfs", statvfs),
        ("open", os_open),
        ("mkdir", mkdir),
        ("replace", replace),
    ]:
        monkeypatch.setattr(os, name, fake)
    monkeypatch.setattr("builtins.open", builtin_open)
    monkeypatch.setattr("io.open", builtin_open)
    return lambda path: roots.append(os.path.realpath(path))


@pytest.mark.parametrize("command", ["train --out", "train --resume", "prepare --out"])
def test_a_read_only_file_system_is_one_line(tiny_corpus, tiny_run, tmp_path, capsys, read_only, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    run = copy_run(tiny_run, ro / "run")
    src = posts(tmp_path / "src")
    read_only(ro)
    argv = {
        "train --out": ["train", "--data", tiny_corpus, "--out", ro / "new", *TINY_FLAGS],
        "train --resume": ["train", "--resume", run, "--max-iters", "8"],
        "prepare --out": ["prepare", src, "--out", ro / "corpus"],
    }[command]
    refused(capsys, argv, command.split()[1], "read-only file system", keep=(ro,))


def test_an_os_error_deep_inside_a_command_is_one_line(tiny_corpus, tmp_path, capsys, monkeypatch):
    """What the early checks can't foresee (a file system that turns read-only mid-run) still ends in one line."""
    from bricklm.training.console import Console

    def read_only_now(self, record):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.run_dir / "metrics.jsonl"))

    monkeypatch.setattr(Console, "append", read_only_now)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS]) == 1
    one_line_error(capsys.readouterr().err, f"{run / 'metrics.jsonl'}: Read-only file system")


UNSHARE = shutil.which("unshare")


@pytest.mark.slow
@pytest.mark.skipif(UNSHARE is None, reason="needs unshare(1) to mount a read-only folder")
def test_a_real_read_only_mount_is_one_line(tiny_corpus, tiny_run, tmp_path):
    """The same three commands against a real read-only bind mount (a user and mount namespace, no root needed)."""
    ro, logs = tmp_path / "ro", tmp_path / "logs"
    ro.mkdir()
    logs.mkdir()
    copy_run(tiny_run, ro / "run")
    src = posts(tmp_path / "src")
    python = f"{sys.executable} -m bricklm"
    commands = {
        "train-out": f"{python} train --data {tiny_corpus} --out {ro}/new {' '.join(TINY_FLAGS)}",
        "train-resume": f"{python} train --resume {ro}/run --max-iters 8",
        "prepare-out": f"{python} prepare {src} --out {ro}/corpus",
    }
    script = f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} {ro} || exit 77\n" + "".join(
        f"{cmd} >{logs}/{name}.out 2>{logs}/{name}.err; echo $? >{logs}/{name}.rc\n" for name, cmd in commands.items()
    )
    before = tree(ro)
    done = subprocess.run([UNSHARE, "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    if done.returncode == 77 or "Operation not permitted" in done.stderr:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    for name in commands:
        assert (logs / f"{name}.rc").read_text().strip() == "1", name
        one_line_error((logs / f"{name}.err").read_text(), "read-only file system")
    assert tree(ro) == before


@pytest.mark.parametrize(
    "argv, needle",
    [
        (lambda run, d, f: ["inspect", "--run", run, "--json", d], "--json"),
        (lambda run, d, f: ["inspect", "--run", run, "--plots", f], "--plots must be a folder"),
        (lambda run, d, f: ["report", run, "--out", d], "--out"),
        (lambda run, d, f: ["overfit", run, "--plot", d / "x.xyz"], "x.xyz"),
    ],
    ids=["inspect--json-DIR", "inspect--plots-FILE", "report--out-DIR", "overfit--plot-x.xyz"],
)
def test_output_paths_that_cannot_be_written_are_refused_first(tiny_run, tmp_path, afile, capsys, argv, needle):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    out = refused(capsys, argv(tiny_run, folder, afile), needle, keep=(tiny_run, folder, afile))
    assert out == ""  # refused before printing any analysis


# --- tracebacks: sampling settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "--run", "RUN", "--temperature", "nan"],
        ["chat", "--run", "RUN", "--temperature", "nan"],
        ["samples-by-loss", "RUN", "--temperature", "nan"],
        ["samples-by-loss", "RUN", "--temperature", "-1"],
        ["samples-by-loss", "RUN", "--chars", "-5"],
        ["sample", "--run", "RUN", "--top-p", "nan"],
    ],
    ids=lambda a: " ".join(a[:1] + a[-2:]),
)
def test_sampling_settings_are_checked_alike_by_every_command(tiny_run, capsys, argv):
    flag = argv[-2]
    refused(capsys, [tiny_run if a == "RUN" else a for a in argv], flag, keep=(tiny_run,))


# --- tracebacks: damaged files in a run ----------------------------------------------------------


RUN_CONFIG_DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "a JSON list": lambda text: "[1, 2, 3]",
    "a pickle": lambda text: b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.",
    "train as a list": lambda text: json.dumps({**json.loads(text), "train": [1]}),
    "data as a list": lambda text: json.dumps({**json.loads(text), "data": ["x"]}),
    "a string for n_layer": lambda text: json.dumps({**json.loads(text), "model": {"n_layer": "four"}}),
    "a string for batch_size": lambda text: json.dumps(
        {**json.loads(text), "train": {**json.loads(text)["train"], "batch_size": "8"}}
    ),
}


@pytest.mark.parametrize("damage", list(RUN_CONFIG_DAMAGE))
def test_a_damaged_run_config_is_named(tiny_run, tmp_path, capsys, damage):
    run = copy_run(tiny_run, tmp_path / "run")
    new = RUN_CONFIG_DAMAGE[damage]((run / "config.json").read_text())
    (run / "config.json").write_bytes(new if isinstance(new, bytes) else new.encode())
    refused(capsys, ["train", "--resume", run], f"{run / 'config.json'}", keep=(run,))


def forge(checkpoint: Path, name: str, data: bytes) -> None:
    """Replace one file of a checkpoint and re-hash the manifest to match, as a hostile user would."""
    (checkpoint / name).write_bytes(data)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))


def forge_wrong_shapes(checkpoint: Path) -> None:
    """model.safetensors with a tensor of another shape, and a manifest that matches it."""
    tensors = load_file(str(checkpoint / "model.safetensors"))
    tensors["tok_emb.weight"] = tensors["tok_emb.weight"][:, :8].contiguous()
    save_file(tensors, str(checkpoint / "model.safetensors"))
    forge(checkpoint, "model.safetensors", (checkpoint / "model.safetensors").read_bytes())


@pytest.mark.parametrize("command", ["sample", "train --resume", "inspect", "info"])
def test_weights_of_the_wrong_shapes_are_named(tiny_run, tmp_path, capsys, command):
    run = copy_run(tiny_run, tmp_path / "run")
    for checkpoint in ckpt.list_checkpoints(run, warn=False):
        forge_wrong_shapes(checkpoint)
    argv = {
        "sample": ["sample", "--run", run, "--max-new-tokens", "5"],
        "train --resume": ["train", "--resume", run, "--max-iters", "8"],
        "inspect": ["inspect", "--run", run],
        "info": ["info", "--run", run],
    }[command]
    refused(capsys, argv, "model.safetensors does not fit this model: tok_emb.weight", keep=(run,))


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("config.json", b'{"model": [1], "train": {}}', "config.json is not a bricklm config"),
        ("trainer.json", b'{"step": "six"}', "trainer.json has no step number"),
    ],
)
@pytest.mark.parametrize("command", ["sample", "inspect"])
def test_forged_checkpoint_json_is_named(tiny_run, tmp_path, capsys, name, data, needle, command):
    run = copy_run(tiny_run, tmp_path / "run")
    for checkpoint in ckpt.list_checkpoints(run, warn=False):
        forge(checkpoint, name, data)
    argv = ["sample", "--run", run, "--max-new-tokens", "3"] if command == "sample" else ["inspect", "--run", run]
    refused(capsys, argv, needle, keep=(run,))


def test_a_best_pointer_reaching_outside_the_run_is_ignored(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    copy_run(tiny_run, tmp_path / "elsewhere")  # another run's complete checkpoint, which the pointer names
    (run / "checkpoints" / "best.json").write_text(json.dumps({"dir": "../../elsewhere/checkpoints/step-000000003"}))
    assert ckpt.best_checkpoint(run) == run / "checkpoints" / "step-000000006"  # the newest of this run instead
    assert main(["sample", "--run", str(run), "--max-new-tokens", "3"]) == 0


SNAPSHOT_DAMAGE = {
    "snapshot.json truncated": ("snapshot.json", lambda b: b[:5]),
    "snapshot.json a list": ("snapshot.json", lambda b: b"[]"),
    "snapshot.json without step": ("snapshot.json", lambda b: json.dumps({"level": 9.0, "val_loss": 3}).encode()),
    "snapshot.json step a string": ("snapshot.json", lambda b: json.dumps({**json.loads(b), "step": "3"}).encode()),
    "model.safetensors garbage": ("model.safetensors", lambda b: b"\x00" * 64),
    "model.safetensors a pickle": ("model.safetensors", lambda b: b"\x80\x04K\x01."),
    "model.safetensors wrong shapes": ("model.safetensors", None),
}


@pytest.mark.parametrize("damage", list(SNAPSHOT_DAMAGE))
def test_a_damaged_snapshot_is_named(tiny_run, tmp_path, capsys, damage):
    run = copy_run(tiny_run, tmp_path / "run")  # trained with the default loss levels: it has a snapshot
    snap = sorted((run / "snapshots").iterdir())[0]
    name, change = SNAPSHOT_DAMAGE[damage]
    if change is None:
        tensors = load_file(str(snap / name))
        tensors["tok_emb.weight"] = tensors["tok_emb.weight"][:3].contiguous()
        save_file(tensors, str(snap / name))
    else:
        (snap / name).write_bytes(change((snap / name).read_bytes()))
    refused(capsys, ["samples-by-loss", run, "--chars", "5"], str(snap), keep=(run,))


METRICS_DAMAGE = {
    "a step that is a string": '{"step": "3", "loss": 1.0}',
    "an evaluation without losses": '{"step": 3, "eval": true}',
    "a loss that is a list": '{"step": 3, "loss": [1]}',
    "a JSON list": "[1, 2]",
}


@pytest.mark.parametrize("damage", list(METRICS_DAMAGE))
@pytest.mark.parametrize("command", ["overfit", "report", "train --resume"])
def test_a_damaged_metrics_line_is_named(tiny_run, tmp_path, capsys, damage, command):
    run = copy_run(tiny_run, tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(2, METRICS_DAMAGE[damage])
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    argv = {"overfit": ["overfit", run], "report": ["report", run], "train --resume": ["train", "--resume", run]}
    refused(capsys, argv[command], f"{run / 'metrics.jsonl'} line 3", keep=(run,))


@pytest.mark.parametrize("damage", ["not JSON", "a list", "a string for steps"])
def test_a_damaged_summary_is_named(tiny_run, tmp_path, capsys, damage):
    run = copy_run(tiny_run, tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    text = {"not JSON": "{", "a list": "[]", "a string for steps": json.dumps({**summary, "steps": "6"})}[damage]
    (run / "summary.json").write_text(text)
    refused(capsys, ["report", run], str(run / "summary.json"), keep=(run,))


# --- tracebacks: Ctrl-C ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.6])
def test_ctrl_c_while_importing_is_quiet(tmp_path, delay):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bricklm", "train", "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)  # PyTorch takes a second or more to import
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "bricklm: interrupted\n", (proc.returncode, err)


@pytest.mark.slow
def test_the_console_script_entry_is_quiet_too(tmp_path):
    """pyproject's [project.scripts] target, run as pip's generated script runs it."""
    from bricklm.recipes import tomllib

    target = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    module, function = target["project"]["scripts"]["bricklm"].split(":")
    script = f"import sys; from {module} import {function}; sys.exit({function}())"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "train"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "bricklm: interrupted\n", (proc.returncode, err)


@pytest.mark.slow
def test_ctrl_c_during_sample_says_interrupted(tiny_run):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bricklm", "sample", "--run", str(tiny_run), "--max-new-tokens", "100000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.read(10)  # sampling has started
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "bricklm: interrupted\n", err


# --- accepted when it should be refused, or silently ignored -----------------------------------------


def failing_spec(tmp_path: Path, runs: str) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        "[model]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\n"
        '[train]\nbatch_size = 4\nmax_iters = 2\neval_interval = 2\neval_iters = 1\nsample_chars = 0\ndevice = "cpu"\n'
        + runs
    )
    return spec


@pytest.mark.parametrize("which", ["every run fails", "one of two fails"])
def test_sweep_exits_non_zero_and_names_the_failed_runs(tiny_corpus, tmp_path, capsys, which):
    runs = "[[runs]]\nblock_size = 1000000\n" + (
        "[[runs]]\nblock_size = 2000000\n" if which.startswith("every") else "[[runs]]\nn_embd = 8\n"
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(failing_spec(tmp_path, runs)), "--data", str(tiny_corpus), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    failed = "run-01, run-02" if which.startswith("every") else "run-01"
    one_line_error(err, f"runs were not trained: {failed} (why")


def test_ablate_exits_non_zero_when_every_variant_fails(tiny_corpus, tmp_path, capsys):
    argv = ["ablate", "--data", str(tiny_corpus), "--out", str(tmp_path / "abl"), "--variants", "no-pos"]
    assert main([*argv, *tiny_flags(block_size=1000000)]) == 1
    one_line_error(capsys.readouterr().err, "2 of 2 runs were not trained: original, no-pos")


def test_finetune_from_and_resume_together_are_refused(tiny_run, tmp_path, capsys):
    refused(capsys, ["finetune", "--from", tiny_run, "--resume", tiny_run], "--from", "--resume", keep=(tiny_run,))


@pytest.mark.parametrize("flag", [["--n-layer", "7"], ["--batch-size", "2"], ["--config", "x.toml"]])
def test_info_refuses_flags_it_would_ignore(tiny_run, capsys, flag):
    refused(capsys, ["info", "--run", tiny_run, *flag], flag[0], "ignored", keep=(tiny_run,))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (lambda c, r, o: ["train", "--data", c, "--out", o, *tiny_flags(min_lr=0.5)], "train.min_lr (0.5) is above"),
        (lambda c, r, o: ["train", "--data", c, "--out", o, *tiny_flags(seed=-1)], "train.seed"),
        (
            lambda c, r, o: ["finetune", "--from", r, "--out", o, "--lora-rank", "4", "--lora-alpha", "nan"],
            "--lora-alpha must be a finite number",
        ),
        (lambda c, r, o: ["finetune", "--from", r, "--out", o, "--lora-rank", "100000"], "--lora-rank 100000 is more"),
        (lambda c, r, o: ["finetune", "--from", r, "--out", o, "--lora-alpha", "16"], "--lora-alpha applies only"),
        (lambda c, r, o: ["finetune", "--resume", r, "--lora-rank", "4"], "--lora-rank cannot be used with --resume"),
        (lambda c, r, o: ["inspect", "--run", r, "--config", "x.toml"], "--config describes an untrained model"),
    ],
    ids=["min-lr", "seed", "lora-alpha-nan", "lora-rank-too-big", "alpha-without-rank", "resume-lora", "inspect"],
)
def test_settings_are_checked_together(tiny_corpus, tiny_run, tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    refused(capsys, argv(tiny_corpus, tiny_run, out), needle, keep=(tiny_run,), absent=(out,))


# --- small ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_missing_manifest_is_one_warning_line(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "checkpoints" / "step-000000006" / "manifest.json").unlink()
    done = cli("sample", "--run", run, "--checkpoint", "last", "--max-new-tokens", "3")
    assert done.returncode == 0
    warning, *rest = done.stderr.splitlines()  # then only the copying meter's line for the sample
    assert (
        warning == f"bricklm: warning: ignoring incomplete checkpoint {run}/checkpoints/step-000000006 "
        "(no manifest.json)"
    ), done.stderr
    assert len(rest) == 1 and rest[0].startswith("copied: longest "), done.stderr


def test_overfit_says_the_plot_name_it_wrote(tiny_run, tmp_path, capsys):
    assert main(["overfit", str(tiny_run), "--plot", str(tmp_path / "sw")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"plot: {tmp_path / 'sw.png'}")
    assert (tmp_path / "sw.png").read_bytes()[:4] == b"\x89PNG"


def test_no_text_names_the_skipped_files(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.md", "b.txt"):
        (src / name).write_bytes(b"\x00\x01\x02binary" * 50)
    refused(
        capsys,
        ["prepare", src, "--out", tmp_path / "c"],
        "no text found",
        "skipped: ",
        "a.md (binary",
        "b.txt",
        keep=(src,),
        absent=(tmp_path / "c",),
    )


def test_prepare_into_its_own_source_is_refused(tmp_path, capsys):
    src = posts(tmp_path / "src")
    refused(capsys, ["prepare", src, "--out", src], f"--out {src} is the source", keep=(src,))
    refused(capsys, ["prepare", src, "--out", tmp_path], f"--out {tmp_path} holds the source", keep=(tmp_path,))


def test_inspect_refuses_an_unknown_character_before_printing(tiny_run, capsys):
    out = refused(
        capsys, ["inspect", "--run", tiny_run, "--prompt", "héllo"], "not in the vocabulary", keep=(tiny_run,)
    )
    assert out == ""


# --- found beyond the issue -------------------------------------------------------------------------


def test_a_run_directory_whose_name_is_not_utf8_works_everywhere(tiny_corpus, tmp_path, capsys):
    """A folder name of bytes that aren't UTF-8 (Python holds it as lone surrogates) crashed training writing
    summary.json and its sample seed; safetensors refused the snapshot path; report crashed on its title."""
    run = tmp_path / "r\udcff"  # what os.fsdecode(b"r\xff") gives
    commands = [
        ["train", "--data", tiny_corpus, "--out", run, *TINY_FLAGS],
        ["sample", "--run", run, "--max-new-tokens", "5"],
        ["train", "--resume", run, "--max-iters", "7"],
        ["report", run],
        ["samples-by-loss", run, "--chars", "5"],
        ["overfit", run],
        ["inspect", "--run", run],
        ["info", "--run", run],
    ]
    for argv in commands:
        assert main([str(a) for a in argv]) == 0, (argv, capsys.readouterr().err)
    assert json.loads((run / "summary.json").read_text())["run_dir"] == str(run)  # written escaped, read back whole


# --- exports: damaged, hostile or of no kind bricklm reads (issue 26) -------------------------------
#
# Each ends in one `bricklm: error:` line naming the file (and the member, inside a zip), exit 1, no --out,
# the export byte-identical. The exports are generated here in each platform's format (tests/exporthelp.py).

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rss version="2.0" xmlns:wp="http://wordpress.org/export/1.2/"><channel><item><title>&lol3;</title></item></channel></rss>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<rss version="2.0" xmlns:wp="http://wordpress.org/export/1.2/"><channel><item><title>&secret;</title></item></channel></rss>
"""


def an_export(tmp_path: Path) -> str:
    return exporthelp.wxr([exporthelp.post("Hello", "<p>" + "Some words. " * 50 + "</p>")])


def prepare_refused(capsys, tmp_path: Path, src: Path, *needles: str, flags: tuple = ()):
    refused(
        capsys, ["prepare", src, "--out", tmp_path / "out", *flags], *needles, keep=(src,), absent=(tmp_path / "out",)
    )


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_prepare_refuses_a_damaged_zip(tmp_path, capsys, cut):
    whole = exporthelp.make_zip(tmp_path / "whole.zip", {"posts/a.md": "Text. " * 200}).read_bytes()
    (tmp_path / "export.zip").write_bytes(whole[: int(len(whole) * cut)])  # a download cut short
    prepare_refused(capsys, tmp_path, tmp_path / "export.zip", "export.zip: not a readable zip")


def test_prepare_refuses_a_zip_member_whose_data_is_damaged(tmp_path, capsys):
    data = bytearray(exporthelp.make_zip(tmp_path / "x.zip", {"posts/a.md": "Text. " * 2000}).read_bytes())
    data[60:70] = b"\x00" * 10  # inside the member's compressed bytes, after its local header
    (tmp_path / "x.zip").write_bytes(bytes(data))
    prepare_refused(capsys, tmp_path, tmp_path / "x.zip", "x.zip:posts/a.md: damaged zip member")


@pytest.mark.parametrize("inside_a_zip", [False, True])
def test_prepare_refuses_damaged_xml(tmp_path, capsys, inside_a_zip):
    text = an_export(tmp_path)
    text = text[: len(text) // 2]  # an export cut short
    if inside_a_zip:
        src, name = (
            exporthelp.make_zip(tmp_path / "site.zip", {"site.wordpress.xml": text}),
            "site.zip:site.wordpress.xml",
        )
    else:
        (src := tmp_path / "export.xml").write_text(text)
        name = "export.xml"
    prepare_refused(capsys, tmp_path, src, f"{name}: not well-formed XML", "export it again")


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["entity-bomb", "external-entity"])
def test_prepare_refuses_xml_entities(tmp_path, capsys, xml):
    (tmp_path / "export.xml").write_text(xml)
    prepare_refused(capsys, tmp_path, tmp_path / "export.xml", "export.xml: refused: it declares a DTD")


def test_prepare_refuses_a_damaged_notebook(tmp_path, capsys):
    (tmp_path / "nb.ipynb").write_text(exporthelp.notebook([("markdown", "Hello")])[:-40])
    prepare_refused(capsys, tmp_path, tmp_path / "nb.ipynb", "nb.ipynb: damaged notebook, not valid JSON")
    (tmp_path / "nb.ipynb").write_text('{"cells": [{"cell_type": "markdown", "source": 3}]}')
    prepare_refused(capsys, tmp_path, tmp_path / "nb.ipynb", "nb.ipynb: damaged notebook: cell 1")


def test_prepare_refuses_a_zip_bomb_by_its_ratio(tmp_path, capsys):
    bomb = exporthelp.make_zip(tmp_path / "bomb.zip", {"notes/a.md": b" " * (8 << 20)})  # 8 MB in ~8 KB
    prepare_refused(capsys, tmp_path, bomb, "bomb.zip:notes/a.md: refusing the zip", "100 times", "--archive-max-ratio")


def test_prepare_refuses_a_zip_member_past_its_size_limit(tmp_path, capsys):
    text = "".join(f"line {i} of a long note\n" for i in range(120_000)).encode()  # ~3 MB, compresses ~5:1
    big = exporthelp.make_zip(tmp_path / "big.zip", {"big.md": text})
    flags = ("--archive-max-member-mb", "1")
    prepare_refused(capsys, tmp_path, big, "big.zip:big.md: refusing the zip", "past 1 MB", flags=flags)
    assert main(["prepare", str(big), "--out", str(tmp_path / "ok")]) == 0  # within the default limits


def test_prepare_refuses_a_zip_bomb_whose_header_lies_about_its_size(tmp_path, capsys):
    """The sizes a header states are not what is checked: a member claiming 100 bytes that inflates to 8 MB is
    refused (zipfile stops at the stated size, and the CRC then fails) rather than read as 100 bytes."""
    data = bytearray(exporthelp.make_zip(tmp_path / "liar.zip", {"a.md": b" " * (8 << 20)}).read_bytes())
    for header, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size: local, central header
        at = data.index(header) + offset
        data[at : at + 4] = (100).to_bytes(4, "little")
    (tmp_path / "liar.zip").write_bytes(bytes(data))
    prepare_refused(capsys, tmp_path, tmp_path / "liar.zip", "liar.zip:a.md: damaged zip member", "CRC")


@pytest.mark.parametrize("member", ["../escape.md", "notes/../../escape.md", "/etc/escape.md", "C:\\escape.md"])
def test_prepare_refuses_a_zip_member_that_escapes(tmp_path, capsys, member):
    archive = exporthelp.make_zip(tmp_path / "evil.zip", {"ok.md": "Fine.", member: "Escaped."})
    prepare_refused(capsys, tmp_path, archive, f"evil.zip: member {member!r} has a path that leaves the archive")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]  # nothing unpacked anywhere


@pytest.mark.parametrize(
    "name, data",
    [
        ("sitemap.xml", '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>'),
        ("export.zip", "this is not a zip at all"),
        ("notes.ipynb", "not JSON"),
    ],
)
def test_prepare_refuses_an_export_of_no_kind_it_reads(tmp_path, capsys, name, data):
    (tmp_path / name).write_text(data)
    needle = "not a readable zip" if name.endswith(".zip") else "not an export bricklm recognises; it reads .md"
    prepare_refused(capsys, tmp_path, tmp_path / name, f"{name}: {needle}")


# --- keep learning from new writing: prepare --tokenizer-from, train --init-from (issue 28) ---------------------


@pytest.mark.parametrize("content", ['{"version": "1.0", "model": {"type": "BPE", "vocab": {}}}', "[1, 2]", "{"])
def test_prepare_tokenizer_from_a_file_that_is_not_bricklms_is_refused(tmp_path, capsys, content):
    src, out = posts(tmp_path / "posts"), tmp_path / "corpus"
    (tmp_path / "tokenizer.json").write_text(content)
    argv = ["prepare", src, "--out", out, "--tokenizer-from", tmp_path / "tokenizer.json"]
    refused(capsys, argv, "--tokenizer-from", keep=(tmp_path / "tokenizer.json", src), absent=(out,))


def test_prepare_tokenizer_from_with_unknown_chars_error_is_refused(tiny_run, tmp_path, capsys):
    src, out = posts(tmp_path / "posts", "naïve café\n" * 40), tmp_path / "corpus"
    argv = ["prepare", src, "--out", out, "--tokenizer-from", tiny_run, "--unknown-chars", "error"]
    refused(capsys, argv, "characters the tokenizer of", "'é' (U+00E9)", keep=(src, tiny_run), absent=(out,))


def test_train_init_from_a_run_without_a_checkpoint_is_refused(tiny_run, tiny_corpus, tmp_path, capsys):
    parent, run = tmp_path / "untrained", tmp_path / "new"
    parent.mkdir()
    shutil.copy(tiny_run / "config.json", parent / "config.json")
    argv = ["train", "--init-from", parent, "--data", tiny_corpus, "--out", run, *TINY_FLAGS]
    refused(capsys, argv, "no checkpoint to start from", keep=(parent, tiny_corpus), absent=(run,))


def test_train_init_from_with_resume_is_refused(tiny_run, tiny_corpus, capsys):
    argv = ["train", "--init-from", tiny_run, "--resume", tiny_run, "--data", tiny_corpus]
    refused(capsys, argv, "--init-from", "--resume", "give one", keep=(tiny_run, tiny_corpus))
    # Without --data there is no corpus in RUN's tokenizer to continue on (the built-in one has its own).
    refused(capsys, ["train", "--init-from", tiny_run], "needs --data", "--tokenizer-from", keep=(tiny_run,))


def test_train_init_from_a_corpus_in_another_tokenizer_is_refused(tiny_run, tmp_path, capsys):
    corpus, run = tmp_path / "other", tmp_path / "new"
    assert main(["prepare", str(posts(tmp_path / "posts", "Zebras? Quietly 42!\n" * 40)), "--out", str(corpus)]) == 0
    capsys.readouterr()
    argv = ["train", "--init-from", tiny_run, "--data", corpus, "--out", run, *TINY_FLAGS]
    refused(capsys, argv, f"--tokenizer-from {tiny_run}", keep=(tiny_run, corpus), absent=(run,))


def test_train_init_from_with_another_model_shape_is_refused(tiny_run, tiny_corpus, tmp_path, capsys):
    run, recipe = tmp_path / "new", tmp_path / "wide.toml"
    argv = ["train", "--init-from", tiny_run, "--data", tiny_corpus, "--out", run]
    refused(capsys, [*argv, *tiny_flags(n_embd=32)], "--n-embd 32", "model.n_embd = 16", absent=(run,))
    recipe.write_text('[model]\nnorm = "rmsnorm"\n')
    refused(capsys, [*argv, "--config", recipe], f"model.norm = 'rmsnorm' in {recipe}", "'layernorm'", absent=(run,))
