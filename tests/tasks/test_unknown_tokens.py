"""Chinese reports with the English default text model: the share of [UNK] tokens is
measured and warned about (datamodule, ``selip prepare``), and
``text_encoder.add_unknown_tokens`` adds the unknown characters to the vocabulary, recorded
in the checkpoint so that a reload tokenises and embeds the same way."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from selip.cli import main
from selip.data.datamodule import SelipDataModule
from selip.text.tokenizer import UnknownTokensWarning, load_tokenizer
from tests.tasks.conftest import TINY_TEXT, tiny_overrides

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"
CHINESE_REPORTS = [
    {"FLAIR": "在左侧基底节区表现为高信号，在右侧额叶表现为低信号",
     "T1": "在左侧基底节区表现为低信号"},
    {"normal": "未见明显异常"},
    {"FLAIR": "在右侧丘脑表现为高信号"},
    {"FLAIR": "在左侧顶叶表现为高信号", "T1": "在左侧顶叶表现为等信号"},
]


@pytest.fixture
def chinese_cohort(tiny_cohort) -> Path:
    """The tiny cohort with the authors' per-sequence JSON reports in Chinese."""
    manifest = tiny_cohort(n=8)
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        row["report"] = json.dumps(CHINESE_REPORTS[i % len(CHINESE_REPORTS)], ensure_ascii=False)
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_the_datamodule_measures_and_warns_naming_the_characters(chinese_cohort, tmp_path):
    datamodule = SelipDataModule(str(chinese_cohort), cache_dir=str(tmp_path / "cache"),
                                 sequences=["t1", "flair"], shape=(8, 8, 8), num_workers=0,
                                 similarity=None, progress=False, check_files=False,
                                 normal_report_text="未见明显异常")
    datamodule.setup("fit")
    assert datamodule.tokens.unknown.share > 0.5
    assert datamodule.describe().unknown_characters == datamodule.training_unknown_characters()
    with pytest.warns(UnknownTokensWarning, match="左"):
        datamodule.warn_unknown_tokens()
    assert {"左", "右"} <= set(datamodule.training_unknown_characters())


def test_prepare_warns_about_unknown_tokens(chinese_cohort, tmp_path, capsys):
    pairs = tiny_overrides(chinese_cohort, tmp_path)
    data = [item for key, value in zip(pairs[::2], pairs[1::2], strict=True)
            if key.startswith("--data.") for item in (key, value)]
    assert main(["prepare", "--config", str(DEMO), *data, "--check_only", "true"]) == 0
    err = capsys.readouterr().err
    assert "selip: warning:" in err and "unknown to the text model's tokenizer" in err
    assert "左" in err and "add_unknown_tokens" in err
    adding = json.dumps({"init_args": {"text_encoder": {"add_unknown_tokens": True}}})
    assert main(["prepare", "--config", str(DEMO), *data, "--check_only", "true",
                 "--model", adding]) == 0
    captured = capsys.readouterr()
    assert "will be added to the vocabulary" in captured.out and "左" in captured.out
    assert "selip: warning:" not in captured.err


def _fit_chinese(manifest: Path, root: Path, add: bool) -> Path:
    text = {**TINY_TEXT, "add_unknown_tokens": add}
    overrides = tiny_overrides(manifest, root,
                               **{"--model.init_args.text_encoder": json.dumps(text),
                                  "--data.similarity": "paper",
                                  "--data.normal_report_text": "未见明显异常"})
    assert main(["fit", "--config", str(DEMO), *overrides, "--trainer.max_epochs", "1"]) == 0
    [checkpoint] = root.glob("runs/demo/version_*/checkpoints/last.ckpt")
    return checkpoint


def test_without_added_tokens_pretraining_warns(chinese_cohort, tmp_path, recwarn):
    _fit_chinese(chinese_cohort, tmp_path, add=False)
    assert any(issubclass(w.category, UnknownTokensWarning) for w in recwarn.list)


def test_added_tokens_are_trained_recorded_and_reloaded(chinese_cohort, tmp_path, recwarn):
    checkpoint_path = _fit_chinese(chinese_cohort, tmp_path, add=True)
    assert not any(issubclass(w.category, UnknownTokensWarning) for w in recwarn.list)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    added = checkpoint["hyper_parameters"]["text_encoder"]["added_tokens"]
    assert {"左", "右", "侧", "额", "表", "现", "为"} <= set(added)
    assert added == sorted(added)
    [embeddings] = [v for k, v in checkpoint["state_dict"].items()
                    if k.endswith("word_embeddings.weight")]
    assert embeddings.shape[0] == len(load_tokenizer(None)) + len(added)
    # a reload builds the same vocabulary: `selip test` loads the checkpoint's weights
    overrides = tiny_overrides(chinese_cohort, tmp_path,
                               **{"--data.similarity": "paper", "--data.test_fraction": "0.25",
                                  "--data.normal_report_text": "未见明显异常"})
    assert main(["test", "--config", str(DEMO), *overrides,
                 "--ckpt_path", str(checkpoint_path)]) == 0
