"""Speed switches that can fail or lose on some machines, each with the plain path it falls back to.

    forward = compile_with_fallback(model, log)      # torch.compile, eager if it fails, even at the first call

The other switches live beside what they speed up (attention kinds in model.py, AdamW
implementations in optim.py, the whole-split evaluation in datasets.py); tests/test_fastpaths.py
checks each against its plain path and benchmarks/run.py measures what each buys here.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class CompiledWithFallback(nn.Module):
    """Calls torch.compile(model); on the first failure (often raised lazily, at the first call,
    when inductor looks for a C compiler or meets an op it can't lower) it logs one line and
    runs the plain module from then on. It is an nn.Module so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, log=print, compiler=None):
        super().__init__()
        self.model = model
        self.log = log
        try:
            # Kept in a list so the compiled wrapper isn't registered as a second copy of the submodule.
            self._compiled = [(compiler or torch.compile)(model)]
        except Exception as exc:  # noqa: BLE001 - any failure to compile means: run eagerly
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        self._compiled = []
        self.log(f"torch.compile unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); running eagerly")

    @property
    def compiled(self) -> bool:
        return bool(self._compiled)

    def forward(self, *args, **kwargs):
        if self._compiled:
            try:
                return self._compiled[0](*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - compile errors surface here, lazily
                if isinstance(exc, (KeyboardInterrupt, torch.cuda.OutOfMemoryError)):
                    raise
                self._give_up(exc)
        return self.model(*args, **kwargs)


def compile_with_fallback(model: nn.Module, log=print, compiler=None) -> nn.Module:
    return CompiledWithFallback(model, log, compiler)
