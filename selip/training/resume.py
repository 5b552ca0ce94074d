"""``--ckpt_path last``: find the run to resume and continue it in its own folder.

Lightning looks for ``last`` in the *new* run's checkpoint folder (a new ``version_N``),
so a killed run would silently start over. selip resolves ``last`` itself: the newest
``<save_dir>/<name>/<version>/checkpoints/last.ckpt``, and the resumed run keeps that
version, so TensorBoard shows one continuous run and later checkpoints land beside the
earlier ones. Under SLURM the version is ``slurm-<job id>`` — the same after a requeue,
and distinct for concurrent jobs sharing a ``save_dir``.
"""

from __future__ import annotations

from pathlib import Path

from selip.training.last_checkpoint import LAST_CHECKPOINT, slurm_job_id


def slurm_version() -> str | None:
    """``slurm-<job id>`` (``slurm-<array job>_<task>``) inside a SLURM job, else None."""
    job = slurm_job_id()
    return f"slurm-{job}" if job else None


def find_last_checkpoint(run_root: Path, version: str | None) -> Path | None:
    """``last.ckpt`` of ``run_root/version``, or with no version the newest among all of
    ``run_root``'s versions; None when there is none."""
    if version is not None:
        candidate = run_root / version / "checkpoints" / LAST_CHECKPOINT
        return candidate if candidate.is_file() else None
    candidates = [p for p in run_root.glob(f"*/checkpoints/{LAST_CHECKPOINT}") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None
