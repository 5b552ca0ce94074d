"""AtomicCheckpointIO (Lightning's writer) and the save it delegates to
(``selip.io.checkpoints.save_checkpoint``): a kill or a failure during a save never leaves a
corrupt file."""

from __future__ import annotations

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

# Imports, says "ready", waits for a line on stdin, then saves in a loop until it is killed,
# printing after the first completed save. It calls the save AtomicCheckpointIO delegates to
# (test_the_lightning_writer_saves_through_it), so it imports no Lightning: seconds less
# for each writer. No fork: forking a process that has imported torch can deadlock the
# child (a lock or an OpenMP pool held by another thread at fork time), which hung CI once.
WRITER = """
import sys, torch
from selip.io.checkpoints import save_checkpoint
path = sys.argv[1]
print("ready", flush=True)
sys.stdin.readline()
for i in range(10_000):
    save_checkpoint({"state_dict": {"w": torch.full((1_000_000,), float(i))},
                     "selip": {"i": i}}, path)
    if i == 0:
        print("saved", flush=True)
"""
KILL_DELAYS = (0.0, 0.05, 0.13, 0.31)  # seconds after a completed save: different moments


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_corrupt_last_ckpt(tmp_path):
    # One writer per kill moment, all started at once so that their imports (seconds each)
    # overlap; each saves only when told, to its own last.ckpt.
    targets = [tmp_path / f"writer{n}" / "checkpoints" / "last.ckpt" for n in range(4)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for target in targets]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline() == "ready\n", "the writer ended while importing"
        for writer, target, delay in zip(writers, targets, KILL_DELAYS, strict=True):
            assert writer.stdin is not None and writer.stdout is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
            assert writer.stdout.readline() == "saved\n", "the writer ended before saving"
            time.sleep(delay)
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=60)
            checkpoint = load_checkpoint(target)
            weights = checkpoint["state_dict"]["w"]
            assert weights.shape == (1_000_000,)
            assert torch.all(weights == checkpoint["selip"]["i"])  # one whole save, no mix
            AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "selip": {}}, target)
            assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # temps reclaimed
    finally:
        for writer in writers:
            writer.kill()
            writer.wait(timeout=60)


def test_the_lightning_writer_saves_through_it(tmp_path, monkeypatch):
    import selip.training.checkpointing as checkpointing

    saved: list[tuple[dict, object]] = []
    monkeypatch.setattr(checkpointing, "save_checkpoint",
                        lambda checkpoint, path: saved.append((checkpoint, path)))
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
    assert saved == [({"state_dict": {}}, tmp_path / "last.ckpt")]


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
