"""AtomicCheckpointIO: a kill or a failure during a save never leaves a corrupt file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from selip.io.checkpoints import CheckpointError, load_checkpoint
from selip.training.checkpointing import AtomicCheckpointIO

ROOT = Path(__file__).parents[2]

# Imports once, then on each line read from stdin forks a child that saves in a loop until
# it is killed; the child's pid and every completed save are printed. One import (which
# costs seconds) serves every kill moment.
WRITER = """
import os, sys, torch
from selip.training.checkpointing import AtomicCheckpointIO
path = sys.argv[1]
for _ in sys.stdin:
    child = os.fork()
    if child == 0:
        io = AtomicCheckpointIO()
        for i in range(10_000):
            io.save_checkpoint({"state_dict": {"w": torch.full((1_000_000,), float(i))},
                                "selip": {"i": i}}, path)
            print("saved", i, flush=True)
    print("child", child, flush=True)
    os.waitpid(child, 0)
    print("reaped", flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_corrupt_last_ckpt(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdin is not None and writer.stdout is not None

    def next_line(prefix: str) -> str:
        for line in writer.stdout:
            if line.startswith(prefix):
                return line
        raise AssertionError(f"the writer ended before printing {prefix!r}")

    try:
        for delay in (0.0, 0.05, 0.13, 0.31):  # kill at different moments of a save
            writer.stdin.write("go\n")
            writer.stdin.flush()
            child = int(next_line("child ").split()[1])
            next_line("saved ")  # at least one save has completed
            time.sleep(delay)
            os.kill(child, signal.SIGKILL)
            next_line("reaped")
            checkpoint = load_checkpoint(target)
            weights = checkpoint["state_dict"]["w"]
            assert weights.shape == (1_000_000,)
            assert torch.all(weights == checkpoint["selip"]["i"])  # one whole save, no mix
    finally:
        writer.stdin.close()
        writer.wait(timeout=60)
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "selip": {}}, target)
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # stale temps reclaimed


def test_a_failing_save_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "selip": {}}, target)

    def disk_full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "selip": {}}, target)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(target)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_loading_a_truncated_file_names_it(tmp_path):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)},
                                          "selip": {}}, target)
    target.write_bytes(target.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=f"not a readable checkpoint: {target}"):
        AtomicCheckpointIO().load_checkpoint(target)
    with pytest.raises(CheckpointError, match=f"not a readable checkpoint: {target}"):
        load_checkpoint(target)
