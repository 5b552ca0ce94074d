"""The prepared cohort under the datamodule: usable without Lightning, the same pairs and S
as the datamodule serves, plain data handed to the tasks, datasets configured through
their constructors, and the similarity mode told apart only in ``selip.similarity`` and the
batch plan."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selip.data import datamodule as datamodule_module
from selip.data.augment import AugmentSettings
from selip.data.cohort import Cohort, CohortSettings
from selip.data.datamodule import SelipDataModule
from selip.data.dataset import PairDataset, TrainingOrder
from selip.data.preprocess import PreprocessSettings
from selip.similarity.per_batch import PerBatchSimilarity
from selip.similarity.settings import SimilaritySettings

SHAPE = (8, 12, 10)


def _datamodule(manifest: Path, cache: Path, **kwargs) -> SelipDataModule:
    options = dict(cache_dir=str(cache), spacing=(2.0, 2.0, 2.0), shape=SHAPE, batch_size=4,
                   num_workers=0, max_length=32, progress=False, similarity="english",
                   val_fraction=0.2, test_fraction=0.2)
    datamodule = SelipDataModule(str(manifest), **{**options, **kwargs})
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_the_cohort_loads_without_lightning(tiny_cohort, tmp_path):
    """A fresh interpreter prepares and loads a cohort, S included, and never imports
    Lightning's trainer package."""
    manifest = tiny_cohort(n=6, with_mask=False)
    script = f"""
import json, sys
from pathlib import Path
from selip.data.cohort import Cohort, CohortSettings
from selip.data.preprocess import PreprocessSettings
from selip.similarity.settings import SimilaritySettings
source = Cohort(CohortSettings(Path({str(manifest)!r}), Path({str(tmp_path / "c")!r}),
                PreprocessSettings((2.0, 2.0, 2.0), {SHAPE!r}),
                similarity=SimilaritySettings("english"), progress=False))
source.prepare()
cohort = source.load()
print(json.dumps({{"pairs": len(cohort.pairs), "texts": len(cohort.report_table),
                  "similarity": len(cohort.similarity),
                  "lightning": sorted(m for m in sys.modules if m.startswith(
                      ("lightning.pytorch", "pytorch_lightning")))}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["pairs"] == 12 and found["similarity"] == found["texts"] > 0
    assert found["lightning"] == []


def test_the_datamodule_serves_the_cohorts_pairs_and_s(tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=6)
    datamodule = _datamodule(manifest, tmp_path / "cache")
    plain = Cohort(CohortSettings(
        manifest, tmp_path / "cache", PreprocessSettings((2.0, 2.0, 2.0), SHAPE),
        val_fraction=0.2, test_fraction=0.2, mirrored_texts=AugmentSettings().flips,
        similarity=SimilaritySettings("english"), progress=False)).load()
    assert plain.pairs == datamodule.pairs
    assert plain.report_table.texts == datamodule.report_table.texts
    assert plain.similarity is not None and datamodule.similarity_table is not None
    assert plain.similarity.key == datamodule.similarity_table.key
    every = torch.arange(len(plain.similarity))
    torch.testing.assert_close(plain.similarity.lookup(every),
                               datamodule.similarity_table.lookup(every))


def test_the_description_is_plain_data(tiny_cohort, tmp_path):
    """No datamodule and no bound method in what a task is handed."""
    datamodule = _datamodule(tiny_cohort(n=6), tmp_path / "cache")
    described = datamodule.describe()
    for field in dataclasses.fields(described):
        value = getattr(described, field.name)
        assert value is not datamodule, field.name
        assert not inspect.ismethod(value) and not inspect.isfunction(value), field.name
    assert described.similarity is datamodule.similarity_table
    assert described.similarity_device_budget_mb == 2048.0
    assert described.unknown_characters == []  # English reports: MiniLM knows them all


def test_training_datasets_are_configured_through_their_constructor(tiny_cohort, tmp_path):
    datamodule = _datamodule(tiny_cohort(n=8), tmp_path / "cache",
                             similarity=SimilaritySettings("english", mode="per_batch"),
                             shuffle_seed=11)
    loader = datamodule.train_dataloader()
    dataset = loader.dataset
    assert isinstance(dataset, PairDataset) and dataset is datamodule.datasets["train"]
    assert dataset.order_seed == 11 and dataset.rank == 0
    assert dataset.augment_fully  # no trainer: a CPU run augments in the workers
    assert dataset.batch_similarity is not None
    assert isinstance(dataset.batch_similarity.similarity, PerBatchSimilarity)
    ordered = PairDataset(dataset.pairs, datamodule.cache, order=TrainingOrder(5, 2, True))
    assert (ordered.order_seed, ordered.rank, ordered.augment_fully) == (5, 2, True)
    # the datamodule sets nothing on a dataset after building it
    source = inspect.getsource(datamodule_module)
    assert not re.search(r"\.(augment_fully|rank|order_seed|batch_similarity|input_ids|"
                         r"attention_mask)\s*=", source)


def test_the_datamodule_never_asks_which_similarity_it_holds():
    source = inspect.getsource(datamodule_module)
    for word in ("PerBatchSimilarity", "per_batch", "similarity_mode"):
        assert word not in source, word
    assert len(source.splitlines()) < 300  # a thin shell: the work is in the cohort layer


@pytest.mark.parametrize("shard_count", [2])
def test_a_shard_prepares_only_its_exams_files(tiny_cohort, tmp_path, shard_count):
    from selip.importer.shard import Shard

    manifest = tiny_cohort(n=6, with_mask=False)
    source = Cohort(CohortSettings(manifest, tmp_path / "cache",
                                   PreprocessSettings((2.0, 2.0, 2.0), SHAPE),
                                   similarity=SimilaritySettings("english"), progress=False))
    whole, mine, jobs = source.prepare_shard(Shard(1, shard_count))
    assert [e.exam_id for e in mine.exams] == [e.exam_id for e in whole.exams][1::shard_count]
    assert len(jobs) == 2 * len(mine.exams)  # two sequences (t1, flair), no masks
    assert not (tmp_path / "cache" / "similarity").exists()  # shard 1 builds no S
