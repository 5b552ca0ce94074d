"""The demo's commands print selip's own lines, progress bars and warnings a user should act
on — no third-party noise. Each command runs through the installed console script, as a
user starts it, on a small demo cohort; any warning line fails the test with the line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.conftest import ROOT, TINY_IMAGE, TINY_TEXT

SELIP = Path(sys.executable).parent / "selip"
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
#: What a warning or an advertisement looks like in a command's output.
NOISE = re.compile(r"Warning|warning:|deprecated|💡|Tip:|HINT:|litlogger")


def _run(*args: str, cwd: Path) -> str:
    done = subprocess.run([str(SELIP), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
@pytest.mark.longest
def test_the_demo_commands_print_no_unexpected_warning(tmp_path):
    import json

    data = ["--data.manifest", str(tmp_path / "demo" / "manifest.csv"),
            "--data.cache_dir", str(tmp_path / "cache"), "--data.num_workers", "0",
            "--data.shape", "[16, 16, 16]", "--data.batch_size", "4",
            "--data.eval_batch_size", "4"]
    model = ["--model.init_args.image_encoder", json.dumps(TINY_IMAGE),
             "--model.init_args.text_encoder", json.dumps(TINY_TEXT),
             "--model.init_args.embed_dim", "16"]
    outputs = {
        "demo-data": _run("demo-data", "--out", str(tmp_path / "demo"), "--num-exams", "10",
                          cwd=tmp_path),
        "prepare": _run("prepare", "--config", str(ROOT / "configs" / "demo.yaml"), *data,
                        cwd=tmp_path),
        "fit": _run("fit", "--config", str(ROOT / "configs" / "demo.yaml"), *data, *model,
                    "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
                    "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
                    cwd=tmp_path),
    }
    [checkpoint] = (tmp_path / "runs").glob("demo/version_0/checkpoints/last.ckpt")
    outputs["export"] = _run("export", "--ckpt", str(checkpoint), "--out",
                             str(tmp_path / "model"), cwd=tmp_path)
    outputs["embed"] = _run("embed", "--ckpt", str(tmp_path / "model"), "--manifest",
                            str(tmp_path / "demo" / "manifest.csv"), "--cache_dir",
                            str(tmp_path / "cache"), "--split", "all", "--out",
                            str(tmp_path / "e.npz"), cwd=tmp_path)
    outputs["search"] = _run("search", "--ckpt", str(tmp_path / "model"), "--embeddings",
                             str(tmp_path / "e.npz"), "--text",
                             "left thalamus: restricted diffusion", "--top", "3",
                             cwd=tmp_path)
    noisy = {command: [line for line in output.splitlines() if NOISE.search(line)]
             for command, output in outputs.items()}
    assert not any(noisy.values()), noisy
    assert "best checkpoint:" in outputs["fit"] and "1. " in outputs["search"]
