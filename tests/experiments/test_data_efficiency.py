"""The data-efficiency driver runs every setting from a real checkpoint and saves a table."""

from __future__ import annotations

import json

import torch

from selip.experiments.data_efficiency import run
from tests.tasks.conftest import ROOT, tiny_data_overrides


def test_the_table_has_every_mode_and_fraction(pretrained, tmp_path):
    manifest, checkpoint = pretrained
    extra = tiny_data_overrides(manifest, tmp_path, **{
        "--data.similarity": "null", "--data.test_fraction": 0.3, "--trainer.max_epochs": 1})
    pairs = [(k, v) for k, v in zip(extra[::2], extra[1::2], strict=True)
             if not k.startswith("--trainer.logger")]  # the driver names each run's logs
    extra = [item for pair in pairs for item in pair]
    results = run(str(checkpoint), tmp_path / "table", extra, fractions=(0.5,),
                  classify_config=str(ROOT / "configs" / "classify.yaml"),
                  segment_config=str(ROOT / "configs" / "segment.yaml"))
    modes = [(r["mode"], r["label_fraction"]) for r in results["classification"]]
    assert modes == [("linear", 0.5), ("finetune", 0.5), ("scratch", 0.5)]
    assert all(0.0 <= r["test/auroc"] <= 1.0 for r in results["classification"])
    assert [r["mode"] for r in results["segmentation"]] == ["finetune", "scratch"]
    assert all("test/dice" in r for r in results["segmentation"])
    # scratch runs use the checkpoint's architecture (random weights), not the default ResNet-50
    [ckpt] = (tmp_path / "table" / "classify_scratch_0.5").glob("version_*/checkpoints/last.ckpt")
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["image_encoder"]["width"] == 4
    saved = json.loads((tmp_path / "table" / "data_efficiency.json").read_text())
    assert saved == results
    table = (tmp_path / "table" / "data_efficiency.md").read_text()
    assert "| linear | 50% |" in table and "| scratch |" in table
