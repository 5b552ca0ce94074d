"""Every way a user starts several processes on one machine, through the installed
``selip`` console script: Lightning's own launcher (``--trainer.devices 2 --trainer.strategy
ddp``) and ``torchrun`` (``srun`` is tests/test_slurm.py). Each run trains on two CPU
(gloo) ranks and must finish with status 0 and the same steps on every rank; a rank that
dies — killed, or an exception on that rank only — must end the whole run, with an error
naming the rank, instead of hanging. Every run has a timeout, so a hang fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tasks.conftest import tiny_overrides
from tests.tasks.recorder import recorded

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
STEPS = 3
TIMEOUT = 120  # a healthy run takes 15-40 s on 2 cores; a hang must fail, not wait

pytestmark = pytest.mark.slow


def _callback(class_path: str, **init_args: object) -> str:
    return f"--trainer.callbacks+={json.dumps({'class_path': class_path, 'init_args': init_args})}"


def _fit_args(manifest: Path, root: Path, *extra: str) -> list[str]:
    overrides = tiny_overrides(manifest, root, **{"--trainer.devices": "2",
                                                  "--trainer.strategy": "ddp",
                                                  "--trainer.max_steps": str(STEPS)})
    return ["fit", "--config", str(ROOT / "configs" / "demo.yaml"), *overrides,
            "--trainer.enable_progress_bar", "false",
            _callback("tests.tasks.recorder.SampleRecorder", path=str(root / "steps.jsonl")),
            _callback("tests.rank_faults.RankPids", folder=str(root)), *extra]


def _launch(launcher: str, args: list[str]) -> list[str]:
    if launcher == "lightning":
        return [str(BIN / "selip"), *args]
    return [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python",
            str(BIN / "selip"), *args]


def _start(command: list[str], root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = root / "output.log"
    with open(log, "wb") as out:  # a file, not a pipe: ranks inherit it, nothing blocks
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def _finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = TIMEOUT) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and every rank it started
        proc.wait()
        pytest.fail(f"the run hung for {timeout} s:\n{log.read_text()[-4000:]}")
    return log.read_text()


def _steps_by_rank(root: Path) -> dict[int, list[int]]:
    steps: dict[int, list[int]] = {}
    for batch in recorded(root / "steps.jsonl"):
        steps.setdefault(batch["rank"], []).append(batch["step"])
    return steps


# Lightning's own launcher's successful 2-rank runs, from the console script and entered
# from Python, are tests/training/test_per_batch_cli.py's, which checks the same: status 0,
# every step on both ranks, the final metrics. One run per launcher and entry is enough.
@pytest.mark.parametrize("launcher", ["torchrun"])
def test_two_ranks_train_the_same_steps_and_end_with_status_0(launcher, tiny_cohort, tmp_path):
    proc, log = _start(_launch(launcher, _fit_args(tiny_cohort(n=16), tmp_path)), tmp_path)
    output = _finish(proc, log)
    assert proc.returncode == 0, output[-4000:]
    assert _steps_by_rank(tmp_path) == {0: list(range(1, STEPS + 1)),
                                        1: list(range(1, STEPS + 1))}, output[-4000:]
    assert "final validation metrics" in output


@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_an_exception_on_rank_1_only_ends_the_run_naming_rank_1(launcher, tiny_cohort,
                                                                  tmp_path):
    args = _fit_args(tiny_cohort(n=16), tmp_path,
                     _callback("tests.rank_faults.RaiseOnRank", rank=1, step=2))
    proc, log = _start(_launch(launcher, args), tmp_path)
    output = _finish(proc, log)
    assert proc.returncode != 0, output[-4000:]
    assert "injected failure on rank 1" in output
    assert "selip: rank 1: failed with RuntimeError" in output, output[-4000:]


def test_an_exception_on_rank_0_only_stops_rank_1(tiny_cohort, tmp_path):
    args = _fit_args(tiny_cohort(n=16), tmp_path,
                     _callback("tests.rank_faults.RaiseOnRank", rank=0, step=2))
    proc, log = _start(_launch("lightning", args), tmp_path)
    output = _finish(proc, log)
    assert proc.returncode != 0, output[-4000:]
    assert "selip: rank 0: failed with RuntimeError" in output, output[-4000:]
    assert not _alive(int((tmp_path / "rank1.pid").read_text()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by its parent) is not alive
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def _wait_for_step(root: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if (root / "steps.jsonl").exists() and 1 in _steps_by_rank(root):
            return
        time.sleep(0.2)
    pytest.fail(f"rank 1 never trained a step:\n{log.read_text()[-4000:]}")


def test_a_killed_rank_1_ends_the_run_naming_it(tiny_cohort, tmp_path):
    args = _fit_args(tiny_cohort(n=16), tmp_path, "--trainer.max_steps", "1000")
    proc, log = _start(_launch("lightning", args), tmp_path)
    _wait_for_step(tmp_path, proc, log)
    pid = int((tmp_path / "rank1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    output = _finish(proc, log, timeout=30)
    assert proc.returncode == 1, output[-4000:]
    # Said by rank 0's observer, or by rank 0 when its collective failed first.
    assert f"selip: rank 1 (pid {pid}) was killed by SIGKILL" in output, output[-4000:]


def test_a_killed_rank_0_does_not_leave_rank_1_waiting(tiny_cohort, tmp_path):
    args = _fit_args(tiny_cohort(n=16), tmp_path, "--trainer.max_steps", "1000")
    proc, log = _start(_launch("lightning", args), tmp_path)
    _wait_for_step(tmp_path, proc, log)
    rank1 = int((tmp_path / "rank1.pid").read_text())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while _alive(rank1) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(rank1):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"rank 1 still runs 30 s after rank 0 was killed:\n{log.read_text()[-3000:]}")
    # Rank 1 noticed through its parent watch, or through its collective's closed peer.
    output = log.read_text()
    assert "has ended; stopping" in output or "selip: rank 1: failed with" in output, output
