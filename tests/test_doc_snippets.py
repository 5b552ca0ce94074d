"""Every Python block a user copies from the README or the docs site runs, as written, in a
folder laid out as the docs assume: a demo run's checkpoint under ``runs/demo/version_0``,
its export in ``selip_demo_model/``, two exams' volumes in ``exam1/`` and ``exam2/`` and the
cohort's ``manifest.csv`` (the tiny cohort and checkpoint of the task tests).

A block whose first line is ``# needs a GPU`` or ``# needs a SLURM cluster`` runs only where
one is present. A new block that cannot run here fails this test until it is marked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from selip.cli import main
from tests.doc_pages import FENCE, PAGES, ROOT
from tests.tasks.conftest import pretrained, pretrained_once  # noqa: F401  (fixtures)

NEEDS = re.compile(r"#\s*needs an? (GPU|SLURM cluster)")


def python_blocks() -> list[tuple[str, str]]:
    """(where, code) of every ``python`` block, ``where`` as ``page:line``."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == "python":
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return found


BLOCKS = python_blocks()


def test_the_docs_hold_python_blocks():
    assert len(BLOCKS) >= 4, BLOCKS  # selip.load, the MONAI tower, S, the cohort's table


@pytest.fixture
def docs_folder(pretrained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """``tmp_path`` laid out as the docs' snippets assume, and made the working directory."""
    manifest, checkpoint = pretrained
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "version_0").symlink_to(checkpoint.parents[1])
    exams = sorted(p for p in (tmp_path / "exams").iterdir() if p.is_dir())
    for name, exam in zip(("exam1", "exam2"), exams, strict=False):
        (tmp_path / name).symlink_to(exam)
    assert main(["export", "--ckpt", str(checkpoint), "--out",
                 str(tmp_path / "selip_demo_model")]) == 0
    assert manifest == tmp_path / "manifest.csv"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/selip stays in the test
    return tmp_path


@pytest.mark.slow
def test_every_python_block_runs(docs_folder: Path):
    ran: dict[str, dict[str, Any]] = {}
    for where, code in BLOCKS:
        needs = NEEDS.match(code.lstrip())
        if needs and not (needs.group(1) == "GPU" and torch.cuda.is_available()):
            continue
        namespace: dict[str, Any] = {"__name__": "__docs__"}
        try:
            exec(compile(code, where, "exec"), namespace)  # the docs' own code
        except Exception as err:  # the block and the line, not only a traceback
            raise AssertionError(f"{where}: the block fails with {type(err).__name__}: {err}\n"
                                 "(run it, or mark it '# needs a GPU' or "
                                 "'# needs a SLURM cluster' on its first line)") from err
        ran[where] = namespace
    assert len(ran) >= 4, sorted(ran)
    # The MONAI block builds the image tower without selip: it computes what selip does.
    [tower] = [ns for ns in ran.values() if "ResNet" in ns and "net" in ns]
    import selip

    model = selip.load(docs_folder / "selip_demo_model", device="cpu")
    volume = torch.rand(2, 1, 16, 16, 16)
    tower["net"].eval()
    with torch.no_grad():
        torch.testing.assert_close(tower["net"](volume), model.model.image_encoder(volume))
