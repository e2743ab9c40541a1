"""Training on several processes with PyTorch's own engine (torch.distributed, DistributedDataParallel).

    torchrun --nproc_per_node=2 -m bricklm train --data corpus/ --out runs/ddp   # 2 GPUs (or 2 CPU processes)
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 -m bricklm train ...     # and node_rank=1 on the other

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `init` reads them and joins the process
group (NCCL on CUDA, gloo on CPU). Without them (plain `bricklm train`) it returns a
`Dist` of one process whose methods do nothing, so the Trainer has one code path.

How a batch is shared out: every process holds the same batch generator (same seed)
and draws the start positions of the whole global micro-batch, batch_size x world_size
windows; process r gathers slice r. torch's CPU generator draws sequentially, so 2
processes with batch_size B train on exactly the windows that 1 process with 2B, or
with B and grad_accum 2, would: the loss trajectories agree to float rounding. And a
checkpoint's generator state is every process's state, so a resume goes on with the
same batches. Dropout (the global torch RNG) is seeded per rank.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from bricklm.data import batch_at, check_split_length
from bricklm.errors import UserError


@dataclass
class Dist:
    """Where this process stands: rank r of world_size, on device."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, draws progress bars, runs callbacks and writes files."""
        return self.rank == 0

    # --- the model ----------------------------------------------------------------------

    def wrap(self, module: torch.nn.Module, seed: int) -> torch.nn.Module:
        """DistributedDataParallel around module (weights broadcast from rank 0); module itself when alone."""
        if not self.enabled:
            return module
        if self.rank:
            torch.manual_seed(seed + self.rank)  # dropout masks differ across ranks, as their data does
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        # The GPT's buffers are constants (causal masks), so there is nothing to broadcast every forward.
        return DDP(module, device_ids=ids, broadcast_buffers=False)

    def sync(self, module: torch.nn.Module, last: bool):
        """Gradient accumulation: skip DDP's all-reduce on every micro-batch but the last."""
        if self.enabled and not last and hasattr(module, "no_sync"):
            return module.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        with self.guard("the gradient all-reduce"):
            loss.backward()

    # --- batches ------------------------------------------------------------------------

    def batch(self, tokens, batch_size: int, block_size: int, generator: torch.Generator, device):
        """This process's (x, y): slice number rank of a global batch of batch_size x world_size windows.

        Alone, this is exactly data.get_batch. Every process draws all the start positions (the
        generators stay in step) and gathers only its own windows.
        """
        check_split_length(tokens, block_size, "given")
        ix = torch.randint(len(tokens) - block_size, (batch_size * self.world_size,), generator=generator)
        mine = ix[self.rank * batch_size : (self.rank + 1) * batch_size]
        return batch_at(tokens, mine, block_size, device)

    # --- talking to the other processes -----------------------------------------------------

    def mean(self, value: float) -> float:
        """The mean of value over all processes (gloo has no AVG, so SUM / world_size)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        with self.guard("a loss average"):
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.item() / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every process if flag is True on any (e.g. a signal reached only some of them)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        with self.guard("the check for a stop signal"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision (e.g. a callback asked to stop), the same on every process."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        with self.guard("the stop decision"):
            dist.broadcast(t, src=0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            with self.guard("a barrier"):
                dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    @contextlib.contextmanager
    def guard(self, doing: str):
        """A peer that died or stopped answering becomes one clear error line, not a traceback or a hang."""
        try:
            yield
        except (RuntimeError, dist.DistError) as e:
            if not self.enabled or not _looks_like_lost_peer(e):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"rank {self.rank} of {self.world_size}: lost another training process during {doing} ({first}); "
                "its own error message says why"
            ) from None


def _looks_like_lost_peer(e: BaseException) -> bool:
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return any(s in text for s in ("connection closed", "connection reset", "timed out", "timeout", "gloo", "nccl"))


def init(device: torch.device, timeout_s: float = 300.0) -> Dist:
    """Join the process group torchrun describes in RANK/WORLD_SIZE/LOCAL_RANK; a Dist of one without them.

    timeout_s: how long a collective waits for the other processes before failing (a hung peer).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise UserError("WORLD_SIZE is set but RANK is missing or not a number; start with torchrun") from None
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} GPUs; "
                "use --nproc_per_node at most the GPU count"
            )
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(f"distributed training runs on cuda (NCCL) or cpu (gloo), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Dist(device=device, rank=rank, world_size=world, local_rank=local_rank, backend=backend)
