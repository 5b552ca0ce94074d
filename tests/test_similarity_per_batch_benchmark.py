"""benchmarks/similarity_per_batch.py runs end to end on a small scale and prints each part."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "similarity_per_batch.py"


@pytest.mark.slow
def test_the_benchmark_prints_step_times_preparation_and_the_top_k_error(tiny_cohort):
    manifest = tiny_cohort(n=40, with_mask=False)
    done = subprocess.run([sys.executable, str(SCRIPT), "--manifest", str(manifest),
                           "--sizes", "300", "600", "--ks", "2", "--synthetic_texts", "1200"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "local  64 × global 512" in out and "paper" in out and "english" in out
    assert "| 600 | per_batch |" in out and "| 600 | dense |" in out
    assert "(extrapolated by U²)" in out  # the tables are built at the smallest U only
    assert "top-2    vs per_batch" in out
