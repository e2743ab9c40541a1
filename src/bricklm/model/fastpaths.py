"""Speed switches that can fail or lose on some machines, each with the plain path it falls back to.

    forward = compile_with_fallback(model, log)      # torch.compile, eager if it fails, even at the first call
    ATTENTION_KERNELS["compiled"]                    # the written-out attention, compiled (registered here)

The other switches live beside what they speed up (attention kinds in attention.py, AdamW
implementations in optim.py, the whole-split evaluation in datasets.py); tests/model/test_fastpaths.py
checks each against its plain path and benchmarks/run.py measures what each buys here.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bricklm.model.attention import ATTENTION_KERNELS, causal_attention_plain


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


class CompiledFunction:
    """torch.compile(fn), compiled at the first call; on any failure there (no C compiler, an op inductor can't
    lower) it says so once (say: print, or a warning where stdout is the output) and calls the plain fn from then
    on. dynamic: torch.compile's (None: a size that changes between calls becomes dynamic after one recompile)."""

    def __init__(self, fn, name: str, dynamic: bool | None = False, say=print):
        self.fn, self.name, self.dynamic, self.say = fn, name, dynamic, say
        self.compiled = None
        self.failed = False

    def __call__(self, *args):
        if not self.failed:
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(self.fn, dynamic=self.dynamic)
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001 - any failure to compile means: run eagerly
                self.failed = True
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__
                self.say(f"torch.compile unavailable for {self.name} ({reason}); running it eagerly")
        return self.fn(*args)


# The written-out attention, compiled: inductor fuses the mask, softmax and dropout into one loop over the
# scores, which with dropout (where the fused sdpa kernel falls back to plain maths) can be several times faster.
ATTENTION_KERNELS["compiled"] = CompiledFunction(causal_attention_plain, "the attention kernel")
