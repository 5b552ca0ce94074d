"""benchmarks/gpu.py: the variants parse, and ``--cpu_smoke`` runs each in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.benchmark_scripts import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "gpu.py"


def test_variants_parse_and_a_typo_fails_early():
    gpu = load_benchmark("gpu")
    assert gpu.parse_variant("16-mixed+cudnn_benchmark") == ("16-mixed", {"cudnn_benchmark"})
    assert "16-mixed+cudnn_benchmark" in gpu.GPU_VARIANTS
    for variant in gpu.GPU_VARIANTS + gpu.SMOKE_VARIANTS:
        gpu.parse_variant(variant)
    with pytest.raises(ValueError, match="bad variant"):
        gpu.parse_variant("16-mixed+compil")
    with pytest.raises(ValueError, match="bad variant"):
        gpu.parse_args(["--variants", "fp16"])


@pytest.mark.slow
@pytest.mark.longest
def test_cpu_smoke_runs_one_process_per_variant():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--cpu_smoke"], cwd=SCRIPT.parents[1],
                          env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    smoke = load_benchmark("gpu").SMOKE_VARIANTS
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[0][2:] for row in rows] == smoke
    assert all("GiB" in row for row in rows)  # measured, not failed or skipped
    results = [json.loads(line.split(": ", 1)[1]) for line in done.stdout.splitlines()
               if line.startswith("  ") and '{"variant"' in line]
    # --trainer.benchmark true reached torch in its child, and only there
    assert {r["variant"]: r["cudnn_benchmark"] for r in results} == {
        v: "cudnn_benchmark" in v for v in smoke}
    # and the selip embed figure on a checkpoint a variant left
    assert "selip embed vs the bare image tower:" in done.stdout, done.stdout[-2000:]
    assert "of bare (target >= 90 %)" in done.stdout
