"""Does this PyTorch run FSDP2 (`fully_shard`) on CPU with gloo? A probe, not part of bricklm.

    torchrun --standalone --nproc_per_node=2 dev/fsdp_cpu_probe.py

Shards a small two-layer model over the processes, trains 3 AdamW steps on the same input
everywhere, prints each rank's losses (they must agree), then gathers a full state dict on
rank 0. On torch 2.13.0+cpu it printed the same three losses on both ranks and the full
shapes on rank 0. bricklm's `--fsdp` switch (distributed.py) is built on this; see docs/scaling.md.
"""

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    for layer in model:
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)  # after sharding: it holds the sharded parameters
    x = torch.randn(4, 8)
    for step in range(3):
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        print(f"rank {rank} step {step} loss {loss.item():.6f}", flush=True)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    print(f"rank {rank} full state dict: { ({k: tuple(v.shape) for k, v in full.items()}) }", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
