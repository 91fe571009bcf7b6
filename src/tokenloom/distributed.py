"""One process of several, as `torchrun` starts them: the process group, the device, the threads.

`torchrun --nnodes N --nproc-per-node M -m tokenloom train ...` (or `... eval perplexity
FILE`) starts M copies of the command on each machine with RANK, LOCAL_RANK, WORLD_SIZE
and LOCAL_WORLD_SIZE in the environment. `setup` is the one place every torchrun-aware
command joins: it joins the process group (gloo on a CPU, nccl where CUDA is), gives each
process its GPU, or on a CPU its share of the machine's cores, and says so at INFO. Without
torchrun (WORLD_SIZE absent or 1) it changes nothing and calls no collective.

Threads on a CPU: the M processes of one machine share its cores, so each runs
max(1, cores // M) threads, cores being the CPUs this process may run on. Left alone, each
process would start with what the environment says (all cores, or torchrun's default
OMP_NUM_THREADS=1), and M processes of all cores' threads each would slow one another.

    rank 1 of 2 (local 1 of 2 on this machine): 4 CPU threads of 8 cores
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def threads_per_process(local_world_size: int, cores: int | None = None) -> int:
    """CPU threads for each of `local_world_size` processes sharing `cores`: max(1, cores // n).

    >>> threads_per_process(2, cores=8), threads_per_process(3, cores=8), threads_per_process(4, cores=2)
    (4, 2, 1)
    """
    if local_world_size < 1:
        raise InvalidArgument(f"local_world_size must be a positive integer, got {local_world_size}")
    return max(1, (usable_cores() if cores is None else cores) // local_world_size)


def setup() -> Dist:
    """Join the process group torchrun describes, pick the device, share the cores; see the module doc."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if world <= 1:
        return Dist(device=device)
    import torch.distributed as dist

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(threads_per_process(local_world))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    ctx = Dist(rank=dist.get_rank(), local_rank=local_rank, world_size=world, device=device)
    where = str(device) if cuda else f"{torch.get_num_threads()} CPU threads of {usable_cores()} cores"
    logger.info("rank %d of %d (local %d of %d on this machine): %s", ctx.rank, world, local_rank, local_world, where)
    return ctx


def teardown(ctx: Dist) -> None:
    """Leave the process group `setup` joined (nothing in one process)."""
    import torch.distributed as dist

    if ctx.enabled and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
