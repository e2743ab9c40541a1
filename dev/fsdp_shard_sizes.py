"""How much of the weights and AdamW moments each process keeps under --fsdp's sharding.

    torchrun --standalone --nproc_per_node=2 dev/fsdp_shard_sizes.py

Shards two GPTs the way `bricklm train --fsdp` does (Dist.shard: each Block, then the whole
model), takes one AdamW step so the moments exist, and prints, per rank, the weight and moment
values it holds against the model's total. Each rank should hold about 1/N of both.
"""

import torch
import torch.distributed as dist

from bricklm.model.gpt import GPT
from bricklm.recipes import load_config
from bricklm.training.distributed import Dist
from bricklm.training.optim import make_optimizer


def main() -> None:
    dist.init_process_group("gloo")
    me = Dist(torch.device("cpu"), rank=dist.get_rank(), world_size=dist.get_world_size(), backend="gloo")
    for n_layer, n_embd in ((2, 64), (6, 384)):
        model_cfg, train_cfg = load_config(
            None, {"n_layer": n_layer, "n_head": 4, "n_embd": n_embd, "block_size": 64, "vocab_size": 65, "fsdp": True}
        )
        torch.manual_seed(0)
        model = me.shard(GPT(model_cfg), train_cfg)
        me.sharded = False  # a fresh model next time round
        opt = make_optimizer(model, train_cfg, me.device)
        x = torch.randint(0, 65, (2, 64))
        model(x, x)[1].backward()
        opt.step()
        mine = sum(p.to_local().numel() for p in model.parameters())
        moments = sum(v.to_local().numel() for s in opt.state.values() for k, v in s.items() if k != "step")
        total = sum(p.numel() for p in model.parameters())
        print(
            f"rank {me.rank}: n_layer {n_layer}, n_embd {n_embd}: {mine:,} of {total:,} weights "
            f"({mine / total:.1%}), {moments:,} of {2 * total:,} AdamW moment values",
            flush=True,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
