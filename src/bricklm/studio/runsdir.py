"""The runs folder as the studio sees it: which runs it holds, their status, and reads that never leave it.

    runs = RunsDir("runs")                   # or RunsDir("runs/blog", single_run=True) for `bricklm serve`
    for run in runs.runs(): ...              # every run, sweep member and ablation variant, by id
    run = runs.get("sweep/run-01")           # None unless that id was found by walking the folder
    path = runs.file(run, "metrics.jsonl")   # None if it is missing or resolves outside the folder
    runs.status(run)                         # "running" | "finished" | "interrupted"

A run is a folder holding config.json; its id is its path relative to the runs folder ("blog",
"sweep/run-01"). A folder holding experiment.json is a sweep or an ablation: the runs inside it
carry its id as their group. Requests name runs only by id, and an id is looked up among the ids
the walk found, so no path from a request is ever joined onto the filesystem. Every path the
walk or a read meets is resolved (symlinks too) and refused unless it stays inside the folder.
Nothing here writes or locks anything in a run: the studio only reads what training wrote, and what a
file holds is parsed by storage/, as every command parses it.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bricklm.errors import UserError
from bricklm.files import LOCK_NAME
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.runs import CONFIG, SUMMARY, read_json_object
from bricklm.storage.snapshots import FILES as SNAPSHOT_FILES
from bricklm.storage.snapshots import complete_snapshots

EXPERIMENT = "experiment.json"  # what `bricklm sweep` and `bricklm ablate` write at the top of their folder
MAX_DEPTH = 3  # runs/<run>, runs/<sweep>/<run>, runs/<project>/<sweep>/<run>
MAX_RUNS = 1000  # a walk stops here, so a huge folder can't stall every page load
MAX_JSON_BYTES = 1 << 20  # config.json, summary.json, experiment.json and friends are a few kB
WALK_TTL_S = 1.0  # how long one walk of the folder is reused


@dataclass(frozen=True)
class Run:
    """One run found by the walk. `path` is resolved and inside the runs folder."""

    id: str
    path: Path
    group: str | None = None  # id of the sweep or ablation folder that holds it
    group_kind: str | None = None  # "sweep" or "ablation" (experiment.json's "kind")

    @property
    def name(self) -> str:
        return self.path.name


class RunsDir:
    """The runs folder (or one run, with single_run=True): a walk of it, cached briefly, and safe reads."""

    def __init__(self, root: str | Path, single_run: bool = False):
        root = Path(root)
        if not root.is_dir() and single_run:
            raise UserError(f"run directory not found: {root}")
        if not root.is_dir():
            raise UserError(
                f"runs folder not found: {root} (train one first, e.g. `bricklm train --out "
                f"{root / 'NAME'}`, or pass --runs DIR)"
            )
        if single_run and not (root / CONFIG).is_file():
            raise UserError(f"{root} has no {CONFIG}; is it a bricklm run directory?")
        self.root = root.resolve()
        self.single_run = single_run
        self._lock = threading.Lock()
        self._walked: tuple[float, dict[str, Run]] = (float("-inf"), {})

    # --- containment -----------------------------------------------------------------------------

    def inside(self, path: Path) -> Path | None:
        """`path` resolved (symlinks followed), or None if that lands outside the runs folder."""
        try:
            real = Path(os.path.realpath(path))
        except (OSError, ValueError):  # ValueError: a NUL byte in the name
            return None
        return real if real == self.root or real.is_relative_to(self.root) else None

    def file(self, run: Run, *parts: str) -> Path | None:
        """A file of a run, resolved, if it exists and stays inside the runs folder; else None."""
        path = self.inside(run.path.joinpath(*parts))
        return path if path is not None and path.is_file() else None

    def read_json(self, run: Run, *parts: str) -> dict[str, Any] | None:
        """A small JSON object of a run (storage.runs.read_json_object), or None if it is missing, outside, too
        big, (half-)written badly or not an object."""
        path = self.file(run, *parts)
        if path is None:
            return None
        try:
            return read_json_object(path, parts[-1], MAX_JSON_BYTES)
        except UserError:
            return None

    # --- the walk --------------------------------------------------------------------------------

    def runs(self) -> list[Run]:
        """Every run in the folder (walked at most once a second, however many requests ask)."""
        return list(self._index().values())

    def get(self, run_id: str) -> Run | None:
        """The run with this id, or None; ids come only from the walk, never from joining a request's text."""
        run = self._index().get(run_id)
        if run is None and run_id:  # a run that appeared since the last walk
            run = self._index(fresh=True).get(run_id)
        return run

    def _index(self, fresh: bool = False) -> dict[str, Run]:
        with self._lock:
            when, found = self._walked
            if fresh or time.monotonic() - when > WALK_TTL_S:
                found = self._walk()
                self._walked = (time.monotonic(), found)
            return found

    def _walk(self) -> dict[str, Run]:
        if self.single_run:
            return {self.root.name: Run(self.root.name, self.root)}
        found: dict[str, Run] = {}
        self._walk_into(self.root, 1, None, None, found)
        return found

    def _walk_into(self, folder: Path, depth: int, group: str | None, kind: str | None, found: dict) -> None:
        try:
            children = sorted(folder.iterdir())
        except OSError:
            return
        for child in children:
            if len(found) >= MAX_RUNS:
                return
            if child.name.startswith("."):  # hidden: a save or a copy in progress
                continue
            real = self.inside(child)
            if real is None or not real.is_dir():
                continue
            rel = child.relative_to(self.root).as_posix()
            if (real / CONFIG).is_file():
                found[rel] = Run(rel, real, group, kind)  # a run's own folders (checkpoints/, corpus/) aren't runs
            elif depth < MAX_DEPTH:
                exp = self.read_json(Run(rel, real), EXPERIMENT) if (real / EXPERIMENT).is_file() else None
                if exp is not None:
                    self._walk_into(real, depth + 1, rel, str(exp.get("kind", "sweep")), found)
                else:
                    self._walk_into(real, depth + 1, group, kind, found)

    # --- what a run is doing ---------------------------------------------------------------------

    def status(self, run: Run) -> str:
        """'running' while a live process holds the run's train.lock, 'finished' with summary.json, else
        'interrupted' (stopped by Ctrl-C, a crash, or still before its first evaluation with no lock)."""
        if lock_is_held(run.path / LOCK_NAME):
            return "running"
        return "finished" if self.file(run, SUMMARY) else "interrupted"

    def checkpoints(self, run: Run) -> list[str]:
        """Names of the run's complete checkpoints (oldest first) whose files all stay inside the folder."""
        return [p.name for p in ckpt.list_checkpoints(run.path, warn=False) if self._checkpoint_inside(p)]

    def _checkpoint_inside(self, path: Path) -> bool:
        # Regular files only: reading a FIFO put there would block the loading thread forever.
        files = [self.inside(path / name) for name in (*ckpt.FILES, ckpt.MANIFEST)]
        return self.inside(path) is not None and all(f is not None and f.is_file() for f in files)

    def snapshots(self, run: Run) -> list[str]:
        """Names of the run's complete loss-level snapshots (snapshots/loss-X.XX) whose files all stay inside the
        folder, highest level first."""
        inside = [d for d in complete_snapshots(run.path) if all(self.inside(d / f) for f in SNAPSHOT_FILES)]
        return sorted((d.name for d in inside), reverse=True)

    def best_checkpoint(self, run: Run) -> str | None:
        """The checkpoint best.json names, if it is one of `checkpoints(run)`, else the newest; None if none.

        best.json is read here rather than through checkpoint.best_checkpoint, which would follow any
        "dir" it holds (even "../.."); only a name from the list is taken.
        """
        names = self.checkpoints(run)
        pointer = self.read_json(run, ckpt.CHECKPOINTS, ckpt.BEST)
        best = pointer.get("dir") if pointer is not None else None
        if best in names:
            return best
        return names[-1] if names else None


def lock_is_held(path: Path) -> bool:
    """Is `path` (a train.lock) locked by a live process? A probe that never writes, creates or keeps a lock.

    The trainer holds an exclusive flock for as long as it runs (files.RunLock) and the kernel drops
    it when the process dies, so a lock file left by a crash reads as not held. The probe asks for a
    shared lock without waiting: refused means someone holds it; granted is released at once. Only a
    regular file is a lock: anything else (a FIFO, whose open would wait for a writer forever, a
    device, a folder) reads as not held, and is opened without blocking, if at all.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a lock file that exists is taken as held
        return path.is_file()
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the lstat
            return False
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
