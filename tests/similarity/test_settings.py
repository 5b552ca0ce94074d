"""The ``data.similarity:`` block: one typed object that ``--print_config`` shows, and the
one translation step that reads configs and command lines written with the flat keys."""

from __future__ import annotations

import warnings

import pytest
import yaml

from selip.cli import main
from selip.similarity.config import SimilarityConfig
from selip.similarity.legacy_keys import FlatSimilarityKeysWarning, translate_arguments
from selip.similarity.settings import (
    SimilaritySettings,
    nest_flat_keys,
    preset_of,
    similarity_settings,
)
from tests.tasks.conftest import ROOT


def test_a_preset_name_is_short_for_the_block_and_null_means_none():
    assert similarity_settings("paper") == SimilaritySettings(preset="paper")
    assert similarity_settings(None) is None
    rule = SimilarityConfig(syntax="indel")
    assert similarity_settings(rule) == SimilaritySettings(preset=rule)
    recorded = {"preset": {"syntax": "indel"}, "mode": "per_batch"}
    assert similarity_settings(recorded) == SimilaritySettings(preset=rule, mode="per_batch")
    with pytest.raises(ValueError, match=r"similarity\.mode must be one of"):
        SimilaritySettings(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"similarity\.top_k must be >= 1"):
        SimilaritySettings(top_k=0)


def test_flat_keys_move_into_the_block_and_the_block_wins():
    old = {"manifest": "m.csv", "similarity": "paper", "similarity_mode": "table",
           "similarity_top_k": 8, "similarity_device_budget_mb": 64.0}
    data, moved = nest_flat_keys(old)
    assert data == {"manifest": "m.csv", "similarity": {
        "preset": "paper", "mode": "table", "top_k": 8, "device_budget_mb": 64.0}}
    assert moved == ["similarity_mode", "similarity_top_k", "similarity_device_budget_mb"]
    assert similarity_settings(data["similarity"]) == SimilaritySettings(
        "paper", "table", 8, device_budget_mb=64.0)
    both = nest_flat_keys({"similarity": {"preset": "paper", "mode": "auto"},
                           "similarity_mode": "table"})[0]
    assert both["similarity"]["mode"] == "auto"
    assert nest_flat_keys({"similarity": None, "similarity_mode": "table"})[0] == \
        {"similarity": None}
    # no similarity key at all: the flat keys size the default preset
    assert nest_flat_keys({"similarity_mode": "table"})[0]["similarity"] == \
        {"preset": "english", "mode": "table"}
    # the rule given directly, as the README once showed
    rule = {"syntax": "indel", "combine": "weighted"}
    data, moved = nest_flat_keys({"similarity": rule})
    assert data["similarity"] == {"preset": rule} and moved == ["similarity"]
    current = {"similarity": {"preset": "paper", "mode": "auto"}}
    assert nest_flat_keys(current) == (current, [])
    assert preset_of(current["similarity"]) == "paper" and preset_of("english") == "english"


def test_the_command_line_and_config_files_are_translated_with_one_warning(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"data": {"similarity": "paper",
                                            "similarity_mode": "per_batch"}}))
    nested = tmp_path / "fit_section.yaml"
    nested.write_text(yaml.safe_dump({"fit": {"data": {"similarity_top_k": 4}}}))
    with pytest.warns(FlatSimilarityKeysWarning) as caught:
        argv = translate_arguments(["fit", "--config", str(old), f"--config={nested}",
                                    "--data.similarity_dense_max_mb=16",
                                    "--data.similarity_top_k", "3", "--data.batch_size", "2"])
    assert len(caught) == 1
    message = str(caught[0].message)
    for key in ("similarity_mode", "similarity_top_k", "similarity_dense_max_mb"):
        assert f"data.{key} → data.similarity." in message
    assert argv[0:2] == ["fit", "--config"]
    assert yaml.safe_load(argv[2]) == {"data": {"similarity": {"preset": "paper",
                                                               "mode": "per_batch"}}}
    assert yaml.safe_load(argv[3].removeprefix("--config=")) == \
        {"fit": {"data": {"similarity": {"preset": "english", "top_k": 4}}}}
    assert argv[4:] == ["--data.similarity.dense_max_mb=16", "--data.similarity.top_k", "3",
                        "--data.batch_size", "2"]
    current = ["fit", "--config", str(ROOT / "configs" / "pretrain.yaml")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert translate_arguments(current) == current  # nothing to move: no warning


def test_print_config_shows_the_block(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", str(ROOT / "configs" / "pretrain.yaml"), "--print_config"])
    assert exited.value.code == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert data["similarity"] == {"preset": "paper", "mode": "auto", "top_k": None,
                                  "dense_max_mb": 8192.0, "device_budget_mb": 2048.0,
                                  "block_rows": 512}
    assert not any(key.startswith("similarity_") for key in data)


def test_an_old_config_file_still_runs_with_one_warning(tiny_cohort, tmp_path, capsys):
    """A config written for the release before the block (``selip similarity`` reads the
    data settings as ``fit`` does): the flat keys take effect, and say so once."""
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"data": {
        "manifest": str(tiny_cohort(n=6)), "cache_dir": str(tmp_path / "cache"),
        "progress": False, "similarity": "paper", "similarity_mode": "per_batch"}}))
    with pytest.warns(FlatSimilarityKeysWarning, match="similarity_mode"):
        assert main(["similarity", "--config", str(old)]) == 0
    assert "per_batch: no table" in capsys.readouterr().out
