"""data.similarity.mode per_batch: the loader workers' S rows equal the dense table's lookups —
on one rank, on two ranks rebuilt without communication, after a mid-epoch resume, and
through real worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from selip.data.augment import AugmentSettings
from selip.data.batch_similarity import batch_plan, column_checksum
from selip.data.datamodule import SelipDataModule
from selip.data.dataset import PairDataset, TrainingOrder, flip_of
from selip.data.sampler import ResumableSampler, SampleKey
from selip.similarity.lookup import TableSizing
from selip.similarity.per_batch import PerBatchSimilarity
from selip.similarity.settings import SimilaritySettings
from selip.similarity.table import SimilarityTable

SHAPE = (8, 12, 10)
# flips every other sample: mirrored texts must be chosen the same way by every worker
FLIPS = AugmentSettings(flip_probability=0.5, affine_probability=0.0, gamma_probability=0.0)


def _datamodule(manifest, tmp_path, mode, **kwargs):
    options = dict(cache_dir=str(tmp_path / "cache"), spacing=(2.0, 2.0, 2.0), shape=SHAPE,
                   batch_size=4, num_workers=0, max_length=32, progress=False,
                   augment=FLIPS, val_fraction=0.1, test_fraction=0.1)
    sizing = {k: kwargs.pop(k) for k in ("dense_max_mb", "top_k") if k in kwargs}
    options["similarity"] = SimilaritySettings(mode=mode, **sizing)
    options.update(kwargs)
    datamodule = SelipDataModule(str(manifest), **options)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def _training(datamodule, rank=0, world=2, epoch=0, skip=0):
    """The training dataset and sampler of ``rank`` of a ``world``-rank run."""
    pairs = datamodule.cohort.split("train")
    sampler = ResumableSampler(len(pairs), datamodule.batch_size, num_replicas=world,
                               rank=rank, seed=7, positions=True,
                               progress=lambda: (epoch, skip))
    order = TrainingOrder(sampler.seed, rank, batch_similarity=batch_plan(  # as train_sampler
        datamodule.similarity_table, pairs, sampler, flip_of(datamodule.augment, sampler.seed)))
    dataset = PairDataset(pairs, datamodule.cache, datamodule.tokens.input_ids,
                          datamodule.tokens.attention_mask, datamodule.augment,
                          with_mask=False, order=order)
    return dataset, sampler


def _batches(datamodule, rank=0, world=2, epoch=0, skip=0, workers=0):
    """The training batches of ``rank`` of a ``world``-rank run, as the trainer would get
    them (the sampler of that rank, whole batches, drop_last)."""
    dataset, sampler = _training(datamodule, rank, world, epoch, skip)
    loader = DataLoader(dataset, batch_size=datamodule.batch_size, sampler=sampler,
                        drop_last=True, num_workers=workers)
    return list(loader)


@pytest.fixture
def pair_of_datamodules(tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=24, with_mask=False)
    per_batch = _datamodule(manifest, tmp_path, "per_batch")
    table = _datamodule(manifest, tmp_path, "table")
    return per_batch, table


def test_modes_choose_what_they_say():
    small, large = 100, 100_000  # 0.02 MB and 19 GB dense
    assert TableSizing().choose(small) == "dense"
    assert TableSizing().choose(large) == "per_batch"
    assert TableSizing(mode="table").choose(large) == "top_k"
    assert TableSizing(mode="table").top_k_for(large) == 256
    assert TableSizing(mode="per_batch").choose(small) == "per_batch"
    assert TableSizing(top_k=16).choose(small) == "top_k"
    assert TableSizing(dense_max_mb=0.01).choose(small) == "per_batch"
    with pytest.raises(ValueError, match=r"similarity\.mode must be one of"):
        TableSizing(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"similarity\.top_k is a table's setting"):
        TableSizing(top_k=8, mode="per_batch")


def test_auto_turns_to_per_batch_past_the_dense_budget(tiny_cohort, tmp_path, capsys):
    datamodule = _datamodule(tiny_cohort(n=6, with_mask=False), tmp_path, "auto",
                             dense_max_mb=1e-9)
    assert isinstance(datamodule.similarity_table, PerBatchSimilarity)
    assert "computing S exactly per batch" in capsys.readouterr().err
    dense = _datamodule(tiny_cohort(n=6, with_mask=False), tmp_path, "auto")
    assert isinstance(dense.similarity_table, SimilarityTable)


def test_one_rank_rows_equal_the_dense_lookup(pair_of_datamodules):
    per_batch, table = pair_of_datamodules
    assert per_batch.report_table.texts == table.report_table.texts
    batches = _batches(per_batch, rank=0, world=1)
    assert len(batches) >= 3
    for batch in batches:
        ids = batch["report_id"]
        rows = batch["similarity_bits"].view(torch.float16).float()
        torch.testing.assert_close(rows, table.similarity_table.lookup(ids, ids),
                                   rtol=0, atol=0)
        assert int(batch["similarity_check"][0]) == int(column_checksum(ids))
    # the flips happened: some pairs carry their mirrored text
    pairs = per_batch.datasets["train"].pairs
    carried = torch.cat([b["report_id"] for b in batches]).tolist()
    samples = torch.cat([b["sample_id"] for b in batches]).tolist()
    by_sample = {p.sample_id: p for p in pairs}
    mirrored = sum(r != by_sample[s].report_id for r, s in zip(carried, samples, strict=True))
    assert 0 < mirrored < len(carried)


def test_two_ranks_rebuild_the_global_batch_without_communication(pair_of_datamodules):
    per_batch, table = pair_of_datamodules
    ranks = [_batches(per_batch, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) >= 2
    for rank0, rank1 in zip(*ranks, strict=True):
        gathered = torch.cat([rank0["report_id"], rank1["report_id"]])  # gather_no_grad
        for batch in (rank0, rank1):
            rows = batch["similarity_bits"].view(torch.float16).float()
            torch.testing.assert_close(
                rows, table.similarity_table.lookup(batch["report_id"], gathered),
                rtol=0, atol=0)
            assert int(batch["similarity_check"][0]) == int(column_checksum(gathered))
    samples = [torch.cat([b["sample_id"] for b in r]) for r in ranks]
    assert not set(samples[0].tolist()) & set(samples[1].tolist())  # disjoint shares


def test_a_resumed_epoch_gets_the_same_rows_as_an_uninterrupted_one(pair_of_datamodules):
    per_batch, _ = pair_of_datamodules
    whole = _batches(per_batch, rank=1, world=2, epoch=3)
    resumed = _batches(per_batch, rank=1, world=2, epoch=3, skip=1)
    assert len(resumed) == len(whole) - 1
    for first, second in zip(whole[1:], resumed, strict=True):
        for key in ("sample_id", "report_id", "similarity_bits", "similarity_check"):
            assert torch.equal(first[key], second[key]), key
        assert torch.equal(first["image"], second["image"])  # the same flips


def test_worker_processes_compute_the_same_rows(pair_of_datamodules):
    per_batch, _ = pair_of_datamodules
    in_process = _batches(per_batch, rank=0, world=2, epoch=1)
    in_workers = _batches(per_batch, rank=0, world=2, epoch=1, workers=2)
    for first, second in zip(in_process, in_workers, strict=True):
        assert torch.equal(first["similarity_bits"], second["similarity_bits"])
        assert torch.equal(first["report_id"], second["report_id"])


def test_validation_reads_a_small_kept_table(pair_of_datamodules):
    per_batch, table = pair_of_datamodules
    lookup = per_batch.similarity_table
    assert isinstance(lookup, PerBatchSimilarity) and lookup._kept is not None
    ids = torch.tensor([p.report_id for p in per_batch.pairs if p.split in ("val", "test")])
    torch.testing.assert_close(lookup.lookup(ids), table.similarity_table.lookup(ids),
                               rtol=0, atol=0)
    train_ids = torch.tensor([p.report_id for p in per_batch.pairs if p.split == "train"])
    torch.testing.assert_close(lookup.lookup(train_ids[:5], ids),  # beyond the kept table
                               table.similarity_table.lookup(train_ids[:5], ids),
                               rtol=0, atol=0)


def test_keys_that_are_not_whole_batches_are_refused(pair_of_datamodules):
    per_batch, _ = pair_of_datamodules
    dataset, _ = _training(per_batch, rank=0, world=1)  # with its plan
    keys = [SampleKey(0, 0, 0), SampleKey(1, 0, 5)]
    with pytest.raises(ValueError, match="needs whole batches in sampler order"):
        dataset.__getitems__(keys)


def test_the_parsed_reports_are_cached_and_rebuilt_when_corrupt(tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=6, with_mask=False)
    first = _datamodule(manifest, tmp_path, "per_batch")
    stored = sorted((tmp_path / "cache" / "similarity").glob("*-parsed.npz"))
    assert len(stored) == 1
    stamp = stored[0].stat().st_mtime_ns
    again = _datamodule(manifest, tmp_path, "per_batch")
    assert stored[0].stat().st_mtime_ns == stamp  # reused
    assert again.similarity_table.key == first.similarity_table.key
    stored[0].write_bytes(stored[0].read_bytes()[:-64] + bytes(64))  # damaged
    rebuilt = _datamodule(manifest, tmp_path, "per_batch")
    ids = torch.arange(len(rebuilt.similarity_table))
    torch.testing.assert_close(rebuilt.similarity_table.lookup(ids),
                               first.similarity_table.lookup(ids), rtol=0, atol=0)
    assert not list((tmp_path / "cache" / "similarity").glob(".*tmp"))
    assert np.load(stored[0])["keys"].shape == (len(ids),)


def test_a_training_key_draws_the_same_whatever_the_global_generator(tiny_cohort, tmp_path):
    """CPU runs augment wholly in the workers: each training sample's draws are seeded by its
    (order seed, epoch, position), so a resumed run repeats them, and positions differ."""
    datamodule = _datamodule(tiny_cohort(n=6, with_mask=False), tmp_path, "table",
                             augment=AugmentSettings(affine_probability=1.0,
                                                     gamma_probability=1.0))
    dataset = datamodule.datasets["train"]
    dataset.augment_fully, dataset.order_seed = True, 3
    reads = []
    for torch_seed in (0, 1):
        torch.manual_seed(torch_seed)  # a resumed worker's global stream differs
        reads.append([dataset[SampleKey(0, 2, position)]["image"] for position in (0, 1)])
    assert torch.equal(reads[0][0], reads[1][0]) and torch.equal(reads[0][1], reads[1][1])
    assert not torch.equal(reads[0][0], reads[0][1])  # another position, other draws
    dataset.order_seed = 4
    assert not torch.equal(dataset[SampleKey(0, 2, 0)]["image"], reads[0][0])
