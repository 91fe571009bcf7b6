"""torch.distributed for data-parallel training, launched by `torchrun`.

`torchrun --nnodes N --nproc-per-node M -m tokenloom train ...` sets RANK, LOCAL_RANK
and WORLD_SIZE; `setup` (the one set-up of every torchrun-aware command, in
`tokenloom.distributed`) joins the process group and shares out the devices or the cores.
Without torchrun everything here degrades to a single process and no collective is called.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from tokenloom.distributed import Dist, setup, teardown

__all__ = ["Dist", "all_sum", "barrier", "setup", "teardown", "wrap"]


def barrier(ctx: Dist) -> None:
    if ctx.enabled:
        dist.barrier()


def all_sum(ctx: Dist, tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all processes (the tensor itself when alone)."""
    if ctx.enabled:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def wrap(model: torch.nn.Module, ctx: Dist) -> torch.nn.Module:
    """DistributedDataParallel around the model when there are several processes."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)
