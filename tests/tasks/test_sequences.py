"""A pretrained sequence embedding is looked up by sequence name, not by each run's own
``data.sequences`` order (zero-shot's ``[flair]`` numbers FLAIR 0, T1's pretraining slot)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from selip.cli import main
from selip.data.description import DataDescription
from selip.models import SelipModel
from selip.tasks import PretrainTask
from selip.tasks.channels import SequenceIndex, pretraining_sequences
from tests.tasks.conftest import (
    ROOT,
    TINY_IMAGE,
    TINY_TEXT,
    tiny_data_overrides,
    tiny_overrides,
)

DEMO = str(ROOT / "configs" / "demo.yaml")
ZEROSHOT = str(ROOT / "configs" / "zeroshot.yaml")
PROMPTS = '{"infarct": ["left frontal lobe: hyperintense signal"], ' \
          '"normal": ["No abnormality detected."]}'
EMBEDDING = {"--model.init_args.sequence_embedding": "true"}


@pytest.fixture
def embedding_pretrained(tiny_cohort, tmp_path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A manifest and a pretraining checkpoint with the sequence embedding on, written by
    `selip fit` with data.sequences [t1, flair]."""
    manifest = tiny_cohort(n=10)
    root = tmp_path / "pretrain"
    assert main(["fit", "--config", DEMO, *tiny_overrides(manifest, root, **EMBEDDING),
                 "--trainer.max_epochs", "1"]) == 0
    [checkpoint] = root.glob("runs/demo/version_*/checkpoints/last.ckpt")
    return manifest, checkpoint


@pytest.fixture
def looked_up(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Every sequence index the dual encoder's image side receives."""
    seen: list[int] = []
    original = SelipModel.encode_image

    def spy(self: SelipModel, image: torch.Tensor, sequence: torch.Tensor | None = None
            ) -> torch.Tensor:
        if sequence is not None:
            seen.extend(sequence.tolist())
        return original(self, image, sequence)

    monkeypatch.setattr(SelipModel, "encode_image", spy)
    return seen


def _zero_shot(manifest: Path, folder: Path, checkpoint: Path, sequences: str) -> int:
    args = tiny_data_overrides(manifest, folder, **{
        "--model.init_args.prompts": PROMPTS, "--data.similarity": "null",
        "--data.test_fraction": 0.3, "--data.sequences": sequences})
    return main(["test", "--config", ZEROSHOT, *args, "--ckpt_path", str(checkpoint)])


def test_flair_alone_looks_up_flairs_pretraining_index(embedding_pretrained, looked_up,
                                                        tmp_path):
    manifest, checkpoint = embedding_pretrained
    record = torch.load(checkpoint, weights_only=True)["selip"]
    assert record["sequences"] == {"t1": 0, "flair": 1}
    # Zero-shot on [flair]: the data numbers FLAIR 0, the embedding knows it as 1.
    assert _zero_shot(manifest, tmp_path / "zeroshot", checkpoint, "[flair]") == 0
    assert looked_up and set(looked_up) == {1}
    # The pretraining task itself, tested from its checkpoint on [flair].
    looked_up.clear()
    args = tiny_overrides(manifest, tmp_path / "test", **EMBEDDING, **{
        "--data.sequences": "[flair]", "--data.test_fraction": 0.3})
    assert main(["test", "--config", DEMO, *args, "--ckpt_path", str(checkpoint)]) == 0
    assert looked_up and set(looked_up) == {1}


def test_an_unseen_sequence_and_an_unknown_order_are_clear_errors(embedding_pretrained,
                                                                 tmp_path, capsys):
    manifest, checkpoint = embedding_pretrained
    with open(manifest, newline="") as handle:  # a t2 column (T1's files, renamed)
        rows = list(csv.DictReader(handle))
    with_t2 = manifest.with_name("with_t2.csv")
    with open(with_t2, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "t2"])
        writer.writeheader()
        writer.writerows({**row, "t2": row["t1"]} for row in rows)
    assert _zero_shot(with_t2, tmp_path / "t2", checkpoint, "[t2]") == 2
    err = capsys.readouterr().err
    assert "data.sequences has t2" in err and "it knows t1, flair" in err

    # A checkpoint from before the map was stored: its recorded config's data.sequences.
    state = torch.load(checkpoint, weights_only=True)
    del state["selip"]["sequences"]
    torch.save(state, tmp_path / "older.ckpt")
    assert _zero_shot(manifest, tmp_path / "older", tmp_path / "older.ckpt", "[flair]") == 0
    state["selip"]["config"] = None  # ... and without one, no guess
    torch.save(state, tmp_path / "oldest.ckpt")
    capsys.readouterr()
    assert _zero_shot(manifest, tmp_path / "oldest", tmp_path / "oldest.ckpt", "[flair]") == 2
    assert "records no sequence order" in capsys.readouterr().err


def test_the_index_table_translates_by_name_and_names_what_is_unknown():
    index = SequenceIndex({"t1": 0, "flair": 1})
    assert index(torch.tensor([0, 0]), ["flair"]).tolist() == [1, 1]
    assert index(torch.tensor([0, 1, 1]), ["flair", "t1"]).tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match=r"has dwi, which .* never saw; it knows t1, flair"):
        index(torch.tensor([0]), ["dwi"])
    with pytest.raises(ValueError, match="has dwi"):
        index.check(["flair", "dwi"])
    # Without a sequence embedding nothing changes, unseen sequences included.
    off = SequenceIndex({"t1": 0}, enabled=False)
    assert off(torch.tensor([0, 1]), ["dwi", "flair"]).tolist() == [0, 1]
    off.check(["dwi"])
    # The pretraining run itself numbers the sequences as its datamodule does.
    fresh = SequenceIndex()
    assert fresh(torch.tensor([1, 0]), ["flair", "t1"]).tolist() == [1, 0]
    assert fresh.mapping(["flair", "t1"]) == {"flair": 0, "t1": 1}
    assert fresh.mapping(None) is None


def test_older_checkpoints_fall_back_to_their_configs_order_or_fail_when_it_matters():
    stored = {"selip": {"sequences": {"t1": 0, "flair": 1}, "config": "data: {}"}}
    assert pretraining_sequences(stored, required=True) == {"t1": 0, "flair": 1}
    config = "model: {}\ndata:\n  sequences: [T1, flair]\n"
    assert pretraining_sequences({"selip": {"config": config}}, required=True) == \
        {"t1": 0, "flair": 1}
    unset = {"selip": {"config": "data:\n  sequences: null\n"}}
    with pytest.raises(ValueError, match="records no sequence order"):
        pretraining_sequences(unset, required=True)
    assert pretraining_sequences(unset, required=False) is None
    assert pretraining_sequences({"selip": {}}, required=False) is None


def test_a_resumed_pretraining_keeps_the_checkpoints_order():
    task = PretrainTask(image_encoder=TINY_IMAGE, text_encoder=TINY_TEXT,  # type: ignore[arg-type]
                        embed_dim=8, sequence_embedding=True)
    task.on_load_checkpoint({"selip": {"sequences": {"t1": 0, "flair": 1}}})
    task.data = DataDescription(sequences=["flair"])  # what the resumed run's data numbers
    saved: dict = {}
    task.on_save_checkpoint(saved)
    assert saved["selip"]["sequences"] == {"t1": 0, "flair": 1}
    fresh = PretrainTask(image_encoder=TINY_IMAGE, text_encoder=TINY_TEXT,  # type: ignore[arg-type]
                         embed_dim=8, sequence_embedding=True)
    fresh.data = task.data
    fresh.on_save_checkpoint(saved)
    assert saved["selip"]["sequences"] == {"flair": 0}
    off = PretrainTask(image_encoder=TINY_IMAGE, text_encoder=TINY_TEXT,  # type: ignore[arg-type]
                       embed_dim=8)
    off.on_load_checkpoint({"selip": {}})  # no order recorded: fine without the embedding
    with pytest.raises(ValueError, match="records no sequence order"):
        task.on_load_checkpoint({"selip": {}})
