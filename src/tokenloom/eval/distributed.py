"""Scoring on several processes: `torchrun --nproc-per-node N -m tokenloom eval perplexity FILE`.

torchrun starts N copies of the command with RANK / WORLD_SIZE / MASTER_ADDR in
the environment. Each copy joins one process group (gloo on CPU, nccl when CUDA
is there), scores the batches of windows dealt to it (batch i goes to rank
i mod N) and the per-rank sums Σ NLL and T are all-reduced in float64. Every
window is run in the same batch as in one process, so the result equals the
one-process perplexity up to the order of a float64 sum.
"""

from __future__ import annotations

import os

import torch


def init_from_env() -> bool:
    """Join the process group that torchrun describes; False when WORLD_SIZE is absent or 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return True


def finish() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard() -> tuple[int, int]:
    """(rank, world size) under an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sums(nll_sum: float, tokens: int) -> tuple[float, int]:
    """(Σ NLL, Σ T) over all ranks, in float64; unchanged in one process."""
    import torch.distributed as dist

    if shard()[1] == 1:
        return nll_sum, tokens
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    sums = torch.tensor([nll_sum, float(tokens)], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    return float(sums[0]), int(round(float(sums[1])))
