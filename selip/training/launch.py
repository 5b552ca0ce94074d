"""Several processes on one machine: how selip's ranks are started, watched and stopped.

Three ways start a multi-process run, and each must end the whole run when one rank dies:

* **Lightning's own launcher** (``--trainer.devices N --trainer.strategy ddp`` with no
  cluster environment): rank 0 is the process the user started and it starts ranks
  1…N-1 itself by re-running a command line. Lightning builds that command from
  ``sys.argv``, which is wrong whenever selip's training is entered from Python (tests,
  benchmarks, ``selip.experiments``) and was wrong in ``selip fit`` itself. For the run,
  selip makes the process look as if started by ``python -m selip.cli <the same
  arguments>``, which is what Lightning then gives the children.
  Lightning's observer of the children names a PID, polls every 5 s and SIGKILLs rank 0
  without a word on the console; selip's names the rank, says how it ended and exits
  rank 0 with status 1. Each child also watches its parent, so killing rank 0 does not
  leave ranks 1…N-1 waiting in a collective forever.
* **torchrun** and **srun** start every rank themselves and stop the others when one
  fails (``srun --kill-on-bad-exit=1`` in selip's sbatch scripts); selip only names the
  rank in its own error line (:func:`rank_label`).

Nothing here imports Lightning at module level: :func:`lightning_launcher` replaces
Lightning's observer for the duration of a run (checked to exist by
:mod:`selip.training.lightning_compat`, and by behaviour in the launcher tests).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

#: Exit status of rank 0 when another rank of a Lightning-launched run died.
RANK_FAILED_EXIT_CODE = 1

#: Seconds between two looks at the children (and, in a child, at its parent).
POLL_SECONDS = 0.5

#: The child processes of the current Lightning-launched run (local rank = index + 1).
_children: list[subprocess.Popen[bytes]] = []

#: Whether this process started ranks through Lightning's launcher (it is rank 0 then).
_started_children = False

#: Set once rank 0 itself stops the children: from then on their deaths are its doing, not
#: a failure for the observer to report (it would otherwise name the SIGKILL it just sent
#: instead of rank 0's own error).
_stopping = threading.Event()


def rank_label() -> str:
    """``"rank 1: "`` in a multi-process run, ``""`` in a single process (the prefix of
    selip's error lines).

    Read from what each launcher sets, and still right after Lightning's teardown, which
    deletes ``WORLD_SIZE``: torchrun's ``RANK``, SLURM's ``SLURM_PROCID``; under Lightning's
    launcher rank 0 is the process that started children and the others have ``LOCAL_RANK``
    (with ``NODE_RANK``) in the environment it gave them."""
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env and env.get("RANK", "").isdigit():
        return f"rank {env['RANK']}: " if int(env.get("WORLD_SIZE") or 2) > 1 else ""
    if int(env.get("SLURM_NTASKS") or 1) > 1 and env.get("SLURM_PROCID", "").isdigit():
        return f"rank {env['SLURM_PROCID']}: "
    local, node = env.get("LOCAL_RANK", "0"), env.get("NODE_RANK", "0")
    if not (_started_children or (local not in ("", "0") and "MASTER_PORT" in env)):
        return ""
    # Lightning's launcher does not export the devices per node, so a node other than the
    # first is named by node and local rank rather than by a guessed global rank.
    return f"rank {local}: " if node == "0" else f"node {node} local rank {local}: "


def describe_exit(returncode: int) -> str:
    """``"exited with status 1"`` or ``"was killed by SIGKILL"`` for a Popen return code."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def failed_children(wait_seconds: float = 0.0) -> list[tuple[int, int]]:
    """(local rank, return code) of every child rank that has ended badly, waiting up to
    ``wait_seconds`` for one to end (rank 0's own error is often the echo of a child's
    death: a collective whose peer closed the connection)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        failed = [(rank, proc.returncode) for rank, proc in enumerate(_children, start=1)
                  if proc.poll() not in (None, 0)]
        if failed or time.monotonic() >= deadline:
            return failed
        time.sleep(0.1)


def stop_children() -> None:
    """SIGKILL every child rank still running (SIGTERM would make selip try to save a
    checkpoint, which needs the ranks that are gone)."""
    _stopping.set()  # before the first kill, so the observer never reports one of them
    for proc in _children:
        if proc.poll() is None:
            proc.kill()
    for proc in _children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


class RankFailed(RuntimeError):
    """Another rank ended badly; rank 0's own error was only its echo."""


class ChildRankObserver(threading.Thread):
    """Rank 0's watch over ranks 1…N-1: when one ends badly, say which and how, stop the
    others and end rank 0 with :data:`RANK_FAILED_EXIT_CODE`."""

    def __init__(self, children: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True, name="selip-rank-observer")
        self.children = children

    def run(self) -> None:
        while not _stopping.wait(POLL_SECONDS):
            codes = [proc.poll() for proc in self.children]
            # read after the poll: a kill that the poll saw was preceded by the flag
            if _stopping.is_set() or all(code == 0 for code in codes):
                return
            for rank, code in enumerate(codes, start=1):
                if code not in (None, 0):
                    self._end_run(rank, code)

    def _end_run(self, rank: int, returncode: int) -> None:
        print(f"selip: rank {rank} (pid {self.children[rank - 1].pid}) "
              f"{describe_exit(returncode)}; stopping the other ranks", file=sys.stderr,
              flush=True)
        stop_children()
        sys.stdout.flush()
        os._exit(RANK_FAILED_EXIT_CODE)


def _observe(children: list[subprocess.Popen[bytes]]) -> None:
    """Replaces Lightning's ``_launch_process_observer``."""
    global _started_children
    _started_children = bool(children)
    _stopping.clear()
    _children[:] = children
    ChildRankObserver(children).start()


@contextlib.contextmanager
def started_as_selip_cli(argv: Sequence[str]) -> Iterator[None]:
    """For the block, this process looks as if it had been started as ``python -m
    selip.cli <argv>``: ``sys.argv`` and ``__main__.__spec__``, which is all Lightning's
    subprocess launcher reads to start each further rank with the command that started
    this one. No Lightning function is replaced. Tested by
    tests/training/test_launchers.py::test_two_ranks_started_from_python_train_the_same_steps
    (a run entered from ``python -c``, whose own command line could start no rank)."""
    import importlib.util

    import __main__

    spec = importlib.util.find_spec("selip.cli")
    saved_argv, saved_spec = sys.argv, getattr(__main__, "__spec__", None)
    sys.argv = [spec.origin if spec and spec.origin else "selip", *argv]
    __main__.__spec__ = spec
    try:
        yield
    finally:
        sys.argv = saved_argv
        __main__.__spec__ = saved_spec


@contextlib.contextmanager
def lightning_launcher(argv: Sequence[str]) -> Iterator[None]:
    """While a training command runs: Lightning's launcher starts the other ranks as
    ``python -m selip.cli <argv>`` (:func:`started_as_selip_cli`) and selip watches them
    with :class:`ChildRankObserver`.

    The observer replaces Lightning's private ``_launch_process_observer`` — the one
    private function selip still replaces, because Lightning offers no public way to
    watch the ranks it starts. Its behaviour is what the tests check, not only its name:
    tests/training/test_launchers.py::test_a_killed_rank_1_ends_the_run_naming_it and
    ::test_an_exception_on_rank_1_only_ends_the_run_naming_rank_1."""
    from lightning.pytorch.strategies.launchers import subprocess_script as launcher

    saved = launcher._launch_process_observer
    launcher._launch_process_observer = _observe  # type: ignore[assignment]
    try:
        with started_as_selip_cli(argv):
            yield
    except Exception as err:
        # Rank 0 failed: the children wait in a collective for it, so they are stopped;
        # when one of them died first, that is the cause to report.
        failed = failed_children(wait_seconds=2.0) if _children else []
        stop_children()
        if failed:
            rank, code = failed[0]
            raise RankFailed(f"rank {rank} (pid {_children[rank - 1].pid}) "
                             f"{describe_exit(code)}; rank 0 stopped too "
                             f"({type(err).__name__}: {err})") from err
        raise
    finally:
        launcher._launch_process_observer = saved
        _children.clear()


def watch_parent() -> None:
    """In a rank that Lightning's launcher started (``LOCAL_RANK`` ≥ 1 and no torchrun or
    SLURM): end this process when rank 0 is gone, instead of waiting in a collective."""
    env = os.environ
    launched = env.get("LOCAL_RANK", "0") not in ("", "0") and "MASTER_PORT" in env
    if not launched or "TORCHELASTIC_RUN_ID" in env or "SLURM_PROCID" in env:
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        print(f"selip: {rank_label()}rank 0 (pid {parent}) has ended; stopping",
              file=sys.stderr, flush=True)
        os._exit(RANK_FAILED_EXIT_CODE)

    threading.Thread(target=watch, daemon=True, name="selip-parent-watch").start()
