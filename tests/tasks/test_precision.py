"""`selip fit` under the "-true" precisions on CPU: the whole model, and so the batch, in
bfloat16 / float64 — the datamodule must hand the first convolution images of the model's
dtype (Lightning casts the batch before the transfer, the datamodule after it)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from selip.cli import main
from tests.tasks.conftest import tiny_overrides

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"
@pytest.mark.parametrize(("precision", "dtype"), [
    ("bf16-true", torch.bfloat16), ("64-true", torch.float64)])
def test_true_precision_fits_on_cpu(tiny_cohort, tmp_path, precision, dtype):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 32³ inputs as in the bf16-mixed test: at 16³ the last stage is 1×1×1.
    overrides = tiny_overrides(tiny_cohort(n=8), tmp_path, **{
        "--trainer.precision": precision, "--data.shape": "[32, 32, 32]",
        "--trainer.max_epochs": "1", "--trainer.log_every_n_steps": "1"})
    assert main(["fit", "--config", str(DEMO), *overrides]) == 0
    [version] = (tmp_path / "runs" / "demo").iterdir()
    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()
    for tag in ("train/loss", "val/loss", "val/i2t_R@5"):
        values = [e.value for e in events.Scalars(tag)]
        assert values and all(math.isfinite(v) for v in values), (tag, values)
    [last] = version.glob("checkpoints/last.ckpt")
    state = torch.load(last, weights_only=True)["state_dict"]
    assert state["model.image_encoder.resnet.conv1.weight"].dtype == dtype


def test_16_true_is_refused_with_what_to_use_instead(tiny_cohort, tmp_path, capsys):
    # AdamW's eps=1e-8 is 0 in float16: a weight whose gradient (or its square) underflows
    # becomes NaN at the first step, so training in 16-true is refused before it starts.
    overrides = tiny_overrides(tiny_cohort(n=8), tmp_path, **{"--trainer.precision": "16-true"})
    assert main(["fit", "--config", str(DEMO), *overrides, "--trainer.max_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "16-true cannot train" in err and "16-mixed" in err and "Traceback" not in err
