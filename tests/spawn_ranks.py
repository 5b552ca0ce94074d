"""Run a function on several gloo ranks and fail, rather than hang, when one does.

The ranks are forked by multiprocessing's fork server, which imports torch, Lightning and
selip once per test process: every later rank starts with them loaded. Spawned ranks
imported them again, each (the augmentation test: 29 s spawned, about 1 s forked). The ranks
are not forked from the test process itself: it runs threads (pytest-xdist's, torch's), and
a fork of a threaded process can hang — a forked rank did, once in a CI-like run. Launchers
that users run (Lightning's, torchrun, srun) are tested through the console script
elsewhere."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp

#: What the fork server imports once, for every rank it forks.
PRELOAD = ["torch", "torch.distributed", "lightning.pytorch", "selip.data.datamodule",
           "selip.models"]


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(target: Callable[..., None], world_size: int, *args: Any,
              timeout: float = 90) -> None:
    """Start ``target(rank, port, *args)`` for every rank; assert that none hung (killed
    after ``timeout`` s) and that every rank exited with status 0."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # read when the server starts: the first call
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
