"""Shared fixtures: tiny NIfTI volumes and manifests written per test."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ANATOMICAL = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def head_volume(shape: tuple[int, int, int] = (12, 14, 10), seed: int = 0) -> np.ndarray:
    """(X, Y, Z) float32: a noisy bright ellipsoid with a left-sided blob (a toy head)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid**2).sum(0) < 0.8
    volume = 100.0 * inside + rng.normal(0, 5, shape)
    volume[: shape[0] // 3, shape[1] // 2, shape[2] // 2] += 300.0  # left side (low x in RAS)
    return volume.astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, spacing: float = 2.0,
                affine: np.ndarray | None = None) -> Path:
    """Save ``data`` as NIfTI with an isotropic RAS affine unless one is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([spacing, spacing, spacing, 1.0])
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def write_manifest(path: Path, rows: list[dict[str, str]],
                   columns: list[str] | None = None) -> Path:
    """Write ``rows`` as a CSV manifest (columns from the first row unless given)."""
    columns = columns or list(rows[0])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


REPORTS = [
    "FLAIR: left frontal lobe: hyperintense signal.\nT1: left frontal lobe: hypointense signal.",
    "No abnormality detected.",
    "FLAIR: right thalamus: hyperintense signal.\nT1: right thalamus: isointense signal.",
    '{"FLAIR": [{"location": "left parietal lobe", "appearance": "hyperintense signal"}]}',
]


def make_tiny_cohort(root: Path, n: int = 8, with_mask: bool = True,
                     shape: tuple[int, int, int] = (12, 14, 10)) -> Path:
    """A manifest under ``root`` of ``n`` exams with t1 + flair volumes, labels and masks."""
    rows = []
    for i in range(n):
        exam = root / "exams" / f"e{i:02d}"
        t1 = write_nifti(exam / "t1.nii.gz", head_volume(shape, seed=i))
        flair = write_nifti(exam / "flair.nii.gz", head_volume(shape, seed=100 + i))
        row = {"exam_id": f"e{i:02d}", "t1": str(t1.relative_to(root)),
               "flair": str(flair.relative_to(root)), "report": REPORTS[i % len(REPORTS)],
               "label": ["infarct", "normal"][int(i % 4 == 1)]}
        if with_mask:
            mask = (head_volume(shape, seed=i) > 200).astype(np.uint8)
            mask[i % shape[0], 0, 0] = 1  # every exam's mask differs (content-keyed cache)
            row["mask"] = str(write_nifti(exam / "mask.nii.gz", mask).relative_to(root))
        rows.append(row)
    return write_manifest(root / "manifest.csv", rows)


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a manifest of ``n`` exams with t1 + flair volumes, labels and masks."""

    def make(n: int = 8, with_mask: bool = True, shape: tuple[int, int, int] = (12, 14, 10)
             ) -> Path:
        return make_tiny_cohort(tmp_path, n, with_mask, shape)

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests marked ``longest``, then those marked ``slow``, first, so that under
    pytest-xdist the longest ones start while the others fill the gaps instead of ending
    the run alone; skip tests marked ``gpu`` on machines without CUDA."""
    import torch

    items.sort(key=lambda item: ("longest" not in item.keywords,  # stable: file order kept
                                 "slow" not in item.keywords))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@dataclass
class CommandResult:
    """What ``selip <args>`` returned and printed (the fields of a CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def selip_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CommandResult]:
    """``selip_cli(*args)``: run ``selip <args>`` in this process through ``selip.cli.main``,
    as the console script does, and return its exit status and output. For tests of what
    a command computes or refuses; tests/test_quiet.py and the launcher tests start the
    installed console script itself."""
    from selip.cli import main

    def run(*args: str) -> CommandResult:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
        out = capsys.readouterr()
        return CommandResult(code or 0, out.out, out.err)

    return run
