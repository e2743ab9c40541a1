"""The `bricklm` command: the only place that knows argparse. User errors end as one line and an exit code.

    bricklm prepare ~/blog/_posts --out corpus/
    bricklm train --data corpus/ --out runs/blog
    bricklm sample --run runs/blog --prompt "The " --max-new-tokens 300

One way to add a command: a module here with `register(sub)`, which adds its subparsers and sets
`func` to a `cmd_*(args)` that turns the parsed arguments into a call of a library function with
typed arguments; then its name in COMMANDS. A library raises UserError for what a user can fix;
main() prints it as `bricklm: error: ...` and exits 1. Warnings (an old setting's spelling, a
skipped incomplete checkpoint) print as one `bricklm: note:` / `bricklm: warning:` line.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings

from bricklm import __version__
from bricklm.cli import experiments, export, finetune, flags, inspect, prepare, studio, train, tune
from bricklm.errors import UserError

COMMANDS = (prepare, train, tune, experiments, finetune, inspect, studio, export)  # in the order --help lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bricklm",
        description="Turn your own writing into a small GPT: prepare a corpus, train, sample, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"bricklm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line a user can read, without the source path Python adds."""
    kind = "note" if issubclass(category, FutureWarning) else "warning"
    print(f"bricklm: {kind}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with flags.recipe_help(argv):  # `--help --config FILE` shows the recipe's values as the defaults
            parser = build_parser()
    except UserError as exc:
        print(f"bricklm: error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that isn't UTF-8, or a console that can't show
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):  # a character,
            stream.reconfigure(errors="backslashreplace")  # is printed escaped instead of crashing
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.simplefilter("default")  # each distinct warning once
            # A library's deprecations (torch's compiler calls its own deprecated jit code) speak to that
            # library's developers, not to someone training a model: only bricklm's own notes are shown.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return args.func(args)
    except UserError as exc:
        print(f"bricklm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # train's clean stop (interrupts.Interrupted) says where it saved
        print(f"bricklm: {str(exc) or 'interrupted'}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:  # `bricklm sample | head` closing the pipe is not an error
        return 0
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"bricklm: error: {message}", file=sys.stderr)
        return 1


def os_error_message(exc: OSError) -> str | None:
    """The one line for an OSError a user can fix, or None for one that is a bug (and should raise).

    A full disk is the user's to fix wherever the write was. Any other OSError that names a file came
    from a path the user gave (or a folder made from one): a read-only file system, no permission, a
    folder where a file belongs; the line names the path and the cause. One without a file name is a bug.
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full: {exc.strerror} ({exc.filename or 'writing output'})"
    if exc.filename is None:
        return None
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else f"{exc.filename}"
    return f"{where}: {exc.strerror or exc}"
