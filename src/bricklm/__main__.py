"""`python -m bricklm ...` and the `bricklm` command (pyproject's [project.scripts] points at `run`).

`run` is here, not in bricklm.cli, because importing bricklm.cli imports PyTorch, which takes a
second or two: a Ctrl-C in that second must end the command quietly, and only code that runs
before the import can arrange that.
"""

import signal
import sys


def run() -> int:
    """Import the command line with Ctrl-C held back, then run it; Ctrl-C during the import exits 130 quietly.

    An import cut in half by KeyboardInterrupt fails in ways that have nothing to do with the user (a
    traceback from inside torch, even a ValueError), so the signal is only noted until the import is done.
    """
    caught: list[int] = []
    default = signal.getsignal(signal.SIGINT)
    if default is not signal.SIG_IGN:  # a background job started with Ctrl-C ignored keeps ignoring it
        signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        from bricklm.cli import main
        from bricklm.training.distributed import end_process
    finally:
        signal.signal(signal.SIGINT, default)
    try:
        if caught:
            raise KeyboardInterrupt
        code = main()
    except KeyboardInterrupt:  # main handles Ctrl-C inside a command; this is the moment before and after it
        print("bricklm: interrupted", file=sys.stderr)
        code = 130
    return end_process(code)  # a torchrun process ends here, without PyTorch's teardown of its threads


if __name__ == "__main__":
    sys.exit(run())
