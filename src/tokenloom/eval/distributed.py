"""Scoring on several processes: `torchrun --nproc-per-node N -m tokenloom eval perplexity FILE`.

torchrun starts N copies of the command with RANK / WORLD_SIZE / MASTER_ADDR in
the environment. Each copy joins one process group through `tokenloom.distributed.setup`,
the set-up training uses too (gloo on CPU with the cores shared out, nccl when CUDA
is there), scores the batches of windows dealt to it (batch i goes to rank
i mod N) and the per-rank sums Σ NLL and T are all-reduced in float64. Every
window is run in the same batch as in one process, so the result equals the
one-process perplexity up to the order of a float64 sum.
"""

from __future__ import annotations

import torch


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
