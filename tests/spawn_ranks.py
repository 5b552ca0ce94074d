"""Run a function on several forked gloo ranks and fail, rather than hang, when one does.

The ranks are forked, as DataLoader workers are: they inherit this process's imports. Spawned
ranks imported torch, Lightning and selip again, each, which took 10-30 s a test on 2 cores
(the augmentation test: 29 s spawned, 1 s forked); the tests' subjects (gloo collectives,
seeding, norm statistics) do not depend on how the process started. Launchers that users
run (Lightning's, torchrun, srun) are tested through the console script elsewhere."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(target: Callable[..., None], world_size: int, *args: Any,
              timeout: float = 90) -> None:
    """Fork ``target(rank, port, *args)`` for every rank; assert that none hung (killed
    after ``timeout`` s) and that every rank exited with status 0."""
    context = mp.get_context("fork")
    port = free_port()
    processes = [context.Process(target=target, args=(rank, port, *args))
                 for rank in range(world_size)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=timeout)
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.kill()
        process.join(5)
    assert not alive, "a rank hung"
    assert [p.exitcode for p in processes] == [0] * world_size
