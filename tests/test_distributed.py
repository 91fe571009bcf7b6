"""The one set-up of every torchrun-aware command: cores shared out among the processes of a machine."""

import pytest

import tokenloom.distributed as shared
from tokenloom.errors import InvalidArgument
from tokenloom.training import distributed as training


@pytest.mark.parametrize("local_world_size, cores, threads", [
    (1, 8, 8), (2, 8, 4), (3, 8, 2), (8, 8, 1), (4, 2, 1), (2, 1, 1),
])
def test_each_local_process_gets_its_share_of_the_cores(local_world_size, cores, threads):
    assert shared.threads_per_process(local_world_size, cores=cores) == threads


def test_a_local_world_size_below_one_is_refused():
    with pytest.raises(InvalidArgument, match="local_world_size must be a positive integer, got 0"):
        shared.threads_per_process(0, cores=4)


def test_without_torchrun_nothing_changes(monkeypatch):
    import torch

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    ctx = shared.setup()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.enabled) == (0, 1, True, False)
    assert torch.get_num_threads() == threads
    shared.teardown(ctx)


def test_training_joins_through_the_shared_set_up():
    assert training.setup is shared.setup and training.Dist is shared.Dist
