"""Training on several processes with PyTorch's own engine (torch.distributed, DistributedDataParallel).

    torchrun --nproc_per_node=2 -m bricklm train --data corpus/ --out runs/ddp   # 2 GPUs (or 2 CPU processes)
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 -m bricklm train ...     # and node_rank=1 on the other

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `init` reads them and joins the process
group (NCCL on CUDA, gloo on CPU). Without them (plain `bricklm train`) it returns a
`Dist` of one process whose methods do nothing, so the Trainer has one code path.

Each process trains on its own slice of every global batch (datasets.rank_batch says how, and
why 2 processes then see exactly the windows 1 process with twice the batch would). Dropout (the
global torch RNG) is seeded per rank.

With --fsdp, `shard` makes the model FSDP2 (fully_shard) instead of wrapping it in DDP: each
process keeps a slice of every weight, gradient and AdamW moment. `full_copies` gives rank 0
plain full copies whenever something needs the whole model (a checkpoint, callbacks, the final
sample), so checkpoints stay plain single-process ones; on resume it restores into plain copies
and keeps each process's slice. The trainer's own model and optimiser are never swapped out.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import warnings
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from bricklm.errors import UserError


@dataclass
class Dist:
    """Where this process stands: rank r of world_size, on device."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    sharded: bool = False  # FSDP: the model's parameters are shards (DTensors) spread over the processes

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, draws progress bars, runs callbacks and writes files."""
        return self.rank == 0

    # --- the model ----------------------------------------------------------------------

    def wrap(self, module: torch.nn.Module, seed: int) -> torch.nn.Module:
        """DistributedDataParallel around module (weights broadcast from rank 0); module itself when alone
        or when shard() already made it FSDP (FSDP does its own gradient reduction)."""
        if not self.enabled or self.sharded:
            return module
        if self.rank:
            torch.manual_seed(seed + self.rank)  # dropout masks differ across ranks, as their data does
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        # The GPT's buffers are constants (causal masks), so there is nothing to broadcast every forward.
        # torch 2.13 renamed the switch and warns on the old name; its new one still syncs them once at the
        # start, which costs nothing and changes nothing (every process built the same constants).
        if "forward_sync_buffers" in inspect.signature(DDP).parameters:
            return DDP(module, device_ids=ids, forward_sync_buffers=False)
        return DDP(module, device_ids=ids, broadcast_buffers=False)

    def sync(self, module: torch.nn.Module, last: bool):
        """Gradient accumulation: skip DDP's all-reduce on every micro-batch but the last."""
        if self.enabled and not last and hasattr(module, "no_sync"):
            return module.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        with self.guard("the gradient all-reduce"):
            loss.backward()

    # --- FSDP: sharded weights, gradients and optimiser state ---------------------------------

    def shard(self, model: torch.nn.Module, cfg) -> torch.nn.Module:
        """--fsdp: FSDP2's fully_shard on each Block, then on the whole GPT (in place); model itself without.

        Call it before making the optimiser: AdamW then holds the shards, so its moments are sharded too.
        Every process built the same weights from the same seed and keeps its slice of each. A forward
        all-gathers one block's weights at a time and frees them after; backward reduce-scatters the
        gradients, so each process ends up with the mean gradient of its own slice, as DDP's would be.
        """
        if not getattr(cfg, "fsdp", False):
            return model
        if not self.enabled:
            raise UserError(
                "--fsdp shards the model over several processes; start them with "
                "torchrun --nproc_per_node=N -m bricklm train ... --fsdp (or, to resume an FSDP run in one process, "
                "pass --no-fsdp)"
            )
        if cfg.compile:
            raise UserError("--fsdp and --compile have not been made to work together; drop one of them")
        if cfg.log_health:
            raise UserError("--fsdp and --log-health don't mix: the health probes read whole weights between steps")
        if cfg.optimizer == "muon" or cfg.ema:
            raise UserError("--fsdp shards every matrix; Muon and the weight average (--ema) need them whole")
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if self.rank:
            torch.manual_seed(cfg.seed + self.rank)  # dropout masks differ across ranks, as under DDP
        # fully_shard's default mesh is CUDA whenever a GPU exists: name ours, so --device cpu stays on the CPU.
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        # FSDP2 warns on every forward that GPT returns a view (the logits of a 3-D matmul). The warning is
        # about in-place ops on that output skipping the all-gather hook; the training step never makes one.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
        for block in getattr(model, "blocks", []):
            fully_shard(block, mesh=mesh)  # one unit per block: only one block's full weights exist at a time
        fully_shard(model, mesh=mesh)  # the rest: embeddings, final norm, head
        self.sharded = True
        return model

    @contextlib.contextmanager
    def full_copies(
        self, model, optimizer, build, make_opt, *, with_optimizer: bool = True, load: bool = False, device=None
    ):
        """FSDP: plain single-process copies of a sharded model and its optimiser, for the duration.

        Yields (model, optimizer). Without FSDP, or on a process that needn't hold them, these are the
        ones passed in. build() makes a fresh plain model, make_opt(model) its optimiser.

        load=False (a checkpoint, callbacks, the final sample): every process must enter, since
        gathering the full weights (and, with_optimizer, AdamW's moments) is a collective; rank 0 then
        gets a plain model on `device` (CPU by default) and a plain AdamW with parameter-index keys,
        exactly what one process would have, so checkpoint.py, callbacks and the sampler run unchanged.
        load=True (resume): every process gets fresh plain copies to restore a checkpoint into, and on
        leaving without an error each keeps its slice of what was restored.
        """
        if not self.sharded:
            yield model, optimizer
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        device = torch.device(device or "cpu")
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)  # only rank 0 keeps the result
        weights = moments = None
        if not load:
            with self.guard("gathering the sharded weights"):
                weights = get_model_state_dict(model, options=full)
                # Before the first step AdamW has no state, and get_optimizer_state_dict would make some with a
                # zero-learning-rate step, whose step count then skews Adam's bias correction: save none.
                wanted = with_optimizer and optimizer.state
                moments = get_optimizer_state_dict(model, optimizer, options=full) if wanted else None
        if not (load or self.is_main):
            yield model, optimizer
            return
        # The copy's random initial weights are overwritten: drawing them must not move the run's torch RNG, or a
        # run resumed into an evaluation cut short (one copy more than a run never stopped) would draw other dropout.
        with torch.random.fork_rng(devices=[]):
            plain = build().to(device)
        plain_opt = make_opt(plain)
        if weights is not None:
            plain.load_state_dict(weights)
        if moments is not None:
            plain_opt.load_state_dict(_by_index(plain, plain_opt, moments))
        yield plain, plain_opt
        if load:  # every process restored the same checkpoint: each keeps its own slice, no messages
            _keep_my_slices(model, optimizer, plain, plain_opt)

    # --- talking to the other processes -----------------------------------------------------

    def mean(self, value: float) -> float:
        """The mean of value over all processes (gloo has no AVG, so SUM / world_size)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        with self.guard("a loss average"):
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.item() / self.world_size

    def largest(self, value: int) -> int:
        """The largest value over all processes, the same on every one (e.g. the number of a stop signal that
        reached only some of them, 0 where none did): one all-reduce of a single number."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        with self.guard("the check for a stop signal"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

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
        """Leave the process group together. A process that tore its group down while a peer was still
        working (rank 0 samples after the others are done) was seen to abort at exit in CI
        ("terminate called without an active exception"), so every process waits for the rest first."""
        if self.enabled and dist.is_initialized():
            self.barrier()
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


def _parameter_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each parameter in the optimiser's own order: what its integer state keys count."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def _by_index(model, optimizer, named: dict) -> dict:
    """A torch.distributed.checkpoint optimiser state dict (keyed by parameter name) -> optimizer.state_dict()'s
    form (keyed by position), the form checkpoint.py saves: an FSDP checkpoint is a plain one."""
    index = {n: i for i, n in enumerate(_parameter_names(model, optimizer))}
    return {
        "state": {index[n]: s for n, s in named["state"].items()},
        "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in named["param_groups"]],
    }


def _keep_my_slices(model, optimizer, plain, plain_opt) -> None:
    """Resume under FSDP: every process restored the same full weights and AdamW moments into plain copies;
    each keeps its own slice of every tensor (Shard(0), as fully_shard split the parameter), locally.

    Why not set_optimizer_state_dict(full_state_dict=True): in torch 2.13 with gloo it gave rank 1 the
    wrong tensors (exp_avg and exp_avg_sq swapped, so a negative exp_avg_sq and NaN at the next step)
    when the processes' per-parameter state dicts listed their keys in different orders, as ones read
    back from a checkpoint can. Matching by key here does not depend on that order.
    """
    from torch.distributed.tensor import DTensor, distribute_tensor

    def mine(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        full = full.detach().to(like.device)
        if not isinstance(like, DTensor):
            return full.clone()
        return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)  # no messages

    def _local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if isinstance(t, DTensor) else t

    full_weights = dict(plain.named_parameters())
    moments = {name: plain_opt.state.get(p, {}) for name, p in plain.named_parameters()}
    with torch.no_grad():
        for name, p in model.named_parameters():
            _local(p).copy_(_local(mine(full_weights[name], p)))
            state = moments[name]
            if state:  # exp_avg and exp_avg_sq have the parameter's shape; step is a scalar each process keeps
                optimizer.state[p] = {
                    k: (mine(v, p) if v.shape == full_weights[name].shape else v.clone()) if torch.is_tensor(v) else v
                    for k, v in state.items()
                }


_joined = False  # this process joined a process group (init): end_process then skips Python's teardown


def end_process(code: int) -> int:
    """The exit of a command: code itself, or, in a process that joined a process group, os._exit(code).

    destroy_process_group (Dist.close) leaves gloo's worker threads running (torch 2.13), so they are torn
    down in the interpreter's own shutdown; in CI one of two processes that had finished, saved and left
    the group aborted at exit ("terminate called without an active exception"), which torchrun reports as
    a failed run. Everything is written and closed by now, so once the output is flushed, such a process
    ends without that teardown. The abort was not reproduced on demand (0 in 400 runs under load on a
    2-core AMD EPYC), so that this removes it is reasoned, not measured.
    """
    if not _joined:
        return code
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not turn success into a traceback
            stream.flush()
    os._exit(code)


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
    global _joined
    _joined = True
    return Dist(device=device, rank=rank, world_size=world, backend=backend)
