"""SelipDataModule: pairs, splits, batch keys, shapes and dtypes, mirrored texts."""

import pytest
import torch

from selip.data.augment import AugmentSettings
from selip.data.datamodule import SelipDataModule
from selip.data.device_batch import augment_on_device
from selip.similarity.settings import SimilaritySettings
from selip.text.reports import NORMAL_REPORT_TEXT, swap_laterality

SHAPE = (8, 12, 10)


def _datamodule(manifest, tmp_path, **kwargs):
    options = dict(cache_dir=str(tmp_path / "cache"), spacing=(2.0, 2.0, 2.0), shape=SHAPE,
                   batch_size=4, num_workers=0, max_length=32, progress=False)
    options.update(kwargs)
    datamodule = SelipDataModule(str(manifest), **options)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_one_pair_per_exam_and_sequence_and_splits_by_exam(tiny_cohort, tmp_path):
    dm = _datamodule(tiny_cohort(n=10), tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert dm.sequences == ["t1", "flair"]
    assert len(dm.pairs) == 20
    exams_per_split = {s: {p.exam_id for p in dm.pairs if p.split == s}
                       for s in ("train", "val", "test")}
    assert [len(exams_per_split[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert not exams_per_split["val"] & exams_per_split["train"]
    again = _datamodule(tiny_cohort(n=10), tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert [p.split for p in again.pairs] == [p.split for p in dm.pairs]
    other = _datamodule(tiny_cohort(n=10), tmp_path, val_fraction=0.2, test_fraction=0.2,
                        split_seed=1)
    assert [p.split for p in other.pairs] != [p.split for p in dm.pairs]


def test_pair_texts_follow_the_report_per_sequence(tiny_cohort, tmp_path):
    dm = _datamodule(tiny_cohort(n=4), tmp_path)
    text = {(p.exam_id, p.sequence_index): dm.report_table.texts[p.report_id] for p in dm.pairs}
    assert text[("e00", 0)] == "left frontal lobe: hypointense signal"
    assert text[("e00", 1)] == "left frontal lobe: hyperintense signal"
    assert text[("e01", 0)] == text[("e01", 1)] == NORMAL_REPORT_TEXT
    assert text[("e03", 0)] == NORMAL_REPORT_TEXT  # structured report with FLAIR findings only
    for pair in dm.pairs:  # the mirrored id points at the mirrored text
        assert dm.report_table.texts[pair.mirrored_report_id] == swap_laterality(
            dm.report_table.texts[pair.report_id])


def test_train_batch_keys_shapes_and_dtypes(tiny_cohort, tmp_path):
    dm = _datamodule(tiny_cohort(n=8), tmp_path, val_fraction=0.25, test_fraction=0.0,
                     require_mask=True)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "input_ids", "attention_mask", "report_id", "sample_id",
                          "sequence", "label", "mask"}
    assert batch["image"].shape == (4, 1, *SHAPE) and batch["image"].dtype == torch.float16
    assert dm.on_after_batch_transfer(batch, 0)["image"].dtype == torch.float32  # on device
    assert batch["mask"].shape == (4, 1, *SHAPE) and batch["mask"].dtype == torch.int64
    assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"].shape[0] == 4
    assert batch["attention_mask"].shape == batch["input_ids"].shape
    for key in ("report_id", "sample_id", "sequence", "label"):
        assert batch[key].shape == (4,) and batch[key].dtype == torch.int64
    assert dm.classes == ["infarct", "normal"]
    # every batch has the full size: the last incomplete one is dropped (DDP all-gather)
    sizes = [len(b["sample_id"]) for b in dm.train_dataloader()]
    assert sizes == [4] * (len(dm.datasets["train"]) // 4)


def test_tokens_match_the_report_table(tiny_cohort, tmp_path):
    dm = _datamodule(tiny_cohort(n=4), tmp_path, augment=AugmentSettings(enabled=False))
    sample = dm.datasets["train"][0]
    from selip.text.tokenizer import load_tokenizer

    decoded = load_tokenizer(None).decode(sample["input_ids"][sample["attention_mask"] == 1],
                                          skip_special_tokens=True)
    expected = dm.report_table.texts[int(sample["report_id"])]
    assert decoded == expected.lower()


def test_a_flipped_sample_carries_the_mirrored_report(tiny_cohort, tmp_path):
    always = AugmentSettings(flip_probability=1.0, affine_probability=0.0, gamma_probability=0.0,
                             intensity_scale=0.0)
    dm = _datamodule(tiny_cohort(n=4), tmp_path, augment=always, val_fraction=0.0,
                     test_fraction=0.0, require_mask=True)
    plain = _datamodule(tiny_cohort(n=4), tmp_path, augment=AugmentSettings(enabled=False),
                        val_fraction=0.0, test_fraction=0.0, require_mask=True)
    flipped, unflipped = dm.datasets["train"][0], plain.datasets["train"][0]
    # The read mirrors the cached volume (and its mask) as it copies it: exactly a flip.
    assert flipped["image"].is_contiguous() and flipped["image"].dtype == torch.float16
    torch.testing.assert_close(flipped["image"], unflipped["image"].flip(-1))
    assert unflipped["mask"].any()
    torch.testing.assert_close(flipped["mask"], unflipped["mask"].flip(-1))
    assert dm.report_table.texts[int(flipped["report_id"])] == swap_laterality(
        plain.report_table.texts[int(unflipped["report_id"])])
    assert dm.report_table.texts[int(flipped["report_id"])].startswith("right frontal lobe")


def test_eval_loaders_keep_every_pair_without_augmentation(tiny_cohort, tmp_path):
    dm = _datamodule(tiny_cohort(n=10), tmp_path, val_fraction=0.3, test_fraction=0.2,
                     eval_batch_size=4)
    ids = torch.cat([b["sample_id"] for b in dm.val_dataloader()])
    assert sorted(ids.tolist()) == sorted(p.sample_id for p in dm.pairs if p.split == "val")
    a, b = dm.datasets["val"][0], dm.datasets["val"][0]
    torch.testing.assert_close(a["image"], b["image"])  # deterministic


def test_helpful_errors(tiny_cohort, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        SelipDataModule("m.csv", batch_size=0)
    dm = _datamodule(tiny_cohort(n=4), tmp_path, batch_size=64)
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        dm.train_dataloader()


def test_the_similarity_table_covers_every_report_id(tiny_cohort, tmp_path):
    dm = _datamodule(tiny_cohort(n=6), tmp_path, similarity="paper")
    table = dm.similarity_table
    assert table is not None and len(table) == len(dm.report_table)
    batch = next(iter(dm.train_dataloader()))
    block = table.lookup(batch["report_id"])
    assert block.shape == (4, 4) and block.dtype == torch.float32
    assert torch.all(block.diagonal() == 1)
    from selip.similarity import report_similarity

    texts = [dm.report_table.texts[i] for i in batch["report_id"].tolist()]
    expected = torch.from_numpy(report_similarity(texts, preset=dm.similarity))
    torch.testing.assert_close(block, expected, atol=1e-3, rtol=0)
    described = dm.describe()
    assert described.similarity is table and described.similarity_device_budget_mb == 2048.0
    assert table.place("cpu", int(described.similarity_device_budget_mb * 2**20)) is True
    torch.testing.assert_close(table.lookup(batch["report_id"]), block)
    # the same data and settings reuse the table; another preset builds another one
    again = _datamodule(tiny_cohort(n=6), tmp_path, similarity="paper")
    assert again.similarity_table is not None and again.similarity_table.key == table.key
    english = _datamodule(tiny_cohort(n=6), tmp_path, similarity="english")
    assert english.similarity_table is not None and english.similarity_table.key != table.key
    assert _datamodule(tiny_cohort(n=6), tmp_path, similarity=None).similarity_table is None


def test_table_mode_beyond_the_dense_budget_uses_a_sparse_top_k_table(tiny_cohort, tmp_path,
                                                                    capsys):
    from selip.similarity.sparse import SparseSimilarityTable

    manifest = tiny_cohort(n=6)
    dense = _datamodule(manifest, tmp_path, similarity="paper")
    over_budget = _datamodule(manifest, tmp_path, similarity=SimilaritySettings(
        "paper", dense_max_mb=0.0, mode="table"))
    table = over_budget.similarity_table
    assert isinstance(table, SparseSimilarityTable) and "using the top 256" in \
        capsys.readouterr().err
    assert dense.similarity_table is not None
    every = torch.arange(len(table))  # 256 >= U: every pair kept, so exactly the dense S
    torch.testing.assert_close(table.lookup(every), dense.similarity_table.lookup(every))
    two = _datamodule(manifest, tmp_path, similarity=SimilaritySettings("paper", top_k=2))
    assert isinstance(two.similarity_table, SparseSimilarityTable)
    assert two.similarity_table.top_k == 2
    assert two.similarity_table.place("cpu", 2**30) is True
    with pytest.raises(ValueError, match=r"similarity\.top_k"):
        SelipDataModule("m.csv", similarity=SimilaritySettings(top_k=0))


def test_label_fraction_keeps_val_and_test_whole_and_balanced_sampling(tiny_cohort, tmp_path):
    full = _datamodule(tiny_cohort(n=12), tmp_path, val_fraction=0.25, test_fraction=0.25)
    half = _datamodule(tiny_cohort(n=12), tmp_path, val_fraction=0.25, test_fraction=0.25,
                       label_fraction=0.5)
    for split in ("val", "test"):
        assert len(half.datasets[split]) == len(full.datasets[split])
    assert len(half.datasets["train"]) < len(full.datasets["train"])
    train_exams = {p.exam_id for p in half.datasets["train"].pairs}
    assert {full.classes[p.label] for p in half.datasets["train"].pairs} == {"infarct", "normal"}
    assert train_exams < {p.exam_id for p in full.datasets["train"].pairs}
    balanced = _datamodule(tiny_cohort(n=12), tmp_path, class_balanced=True,
                           val_fraction=0.25, test_fraction=0.25)
    sampler = balanced.train_dataloader().sampler
    drawn = [balanced.datasets["train"].pairs[i].label for epoch in range(50)
             for i in sampler.epoch_order(epoch)]
    labels = [p.label for p in balanced.datasets["train"].pairs]
    assert max(labels.count(c) for c in set(labels)) > min(labels.count(c) for c in set(labels))
    shares = [drawn.count(c) / len(drawn) for c in set(labels)]
    assert max(shares) - min(shares) < 0.1  # unbalanced pairs, balanced draws
    with pytest.raises(ValueError, match="label_fraction"):
        SelipDataModule("m.csv", label_fraction=0.0)


def test_stacked_sequences_give_one_sample_per_exam_with_a_channel_per_sequence(
        tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=8)
    stacked = _datamodule(manifest, tmp_path, stack_sequences=True, val_fraction=0.25,
                          test_fraction=0.0, augment=AugmentSettings(enabled=False))
    single = _datamodule(manifest, tmp_path, val_fraction=0.25, test_fraction=0.0)
    assert stacked.image_channels == 2 and single.image_channels == 1
    assert len(stacked.pairs) == 8 and len(single.pairs) == 16
    assert [p.split for p in stacked.pairs] == [p.split for p in single.pairs[::2]]
    sample = stacked.datasets["val"][0]
    assert sample["image"].shape == (2, *SHAPE)
    exam = stacked.datasets["val"].pairs[0].exam_id
    per_sequence = {p.sequence_index: single.datasets["val"][i]["image"]
                    for i, p in enumerate(single.datasets["val"].pairs) if p.exam_id == exam}
    torch.testing.assert_close(sample["image"][0], per_sequence[0][0])  # t1, then flair
    torch.testing.assert_close(sample["image"][1], per_sequence[1][0])
    batch = next(iter(stacked.train_dataloader()))
    assert batch["image"].shape == (4, 2, *SHAPE)


def test_stacked_sequences_need_every_sequence_of_every_exam(tiny_cohort, tmp_path):
    import csv

    from selip.data.manifest import ManifestError
    from tests.conftest import write_manifest

    manifest = tiny_cohort(n=4)
    rows = list(csv.DictReader(manifest.open()))
    rows[2]["t1"] = ""
    write_manifest(manifest, rows)
    _datamodule(manifest, tmp_path)  # one sequence missing is fine for pairs
    with pytest.raises(ManifestError, match=r"row 3 \(exam e02\).*t1.*stack_sequences"):
        _datamodule(manifest, tmp_path, stack_sequences=True)


def test_masks_only_when_required_and_batch_augmentation_only_in_training(tiny_cohort,
                                                                          tmp_path):
    from types import SimpleNamespace

    manifest = tiny_cohort(n=8)
    pretraining = _datamodule(manifest, tmp_path, val_fraction=0.25, test_fraction=0.0)
    assert "mask" not in next(iter(pretraining.train_dataloader()))  # no unused masks
    segmenting = _datamodule(manifest, tmp_path, val_fraction=0.25, test_fraction=0.0,
                             require_mask=True)
    batch = next(iter(segmenting.val_dataloader()))
    original = {k: v.clone() for k, v in batch.items()}
    segmenting.trainer = SimpleNamespace(training=False)  # type: ignore[assignment]
    same = segmenting.on_after_batch_transfer(dict(batch), 0)
    assert torch.equal(same["image"], original["image"])
    segmenting.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    torch.manual_seed(0)
    moved = segmenting.on_after_batch_transfer(dict(batch), 0)
    assert moved["image"].shape == original["image"].shape
    assert not torch.equal(moved["image"], original["image"])
    assert moved["mask"].dtype == torch.int64


def test_on_a_cpu_run_the_workers_augment_and_the_device_hook_does_not(tiny_cohort, tmp_path):
    from types import SimpleNamespace

    from lightning.pytorch.accelerators import CPUAccelerator

    dm = _datamodule(tiny_cohort(n=8), tmp_path, val_fraction=0.25, test_fraction=0.0)
    dm.trainer = SimpleNamespace(training=True, accelerator=CPUAccelerator(),  # type: ignore[assignment]
                                 world_size=1, global_rank=0, fit_loop=None)
    assert not augment_on_device(dm.trainer)
    dm.trainer = None
    loader = dm.train_dataloader()
    dm.trainer = SimpleNamespace(training=True, accelerator=CPUAccelerator())  # type: ignore[assignment]
    dm.datasets["train"].augment_fully = True  # what train_dataloader sets on a CPU run
    batch = next(iter(loader))
    assert batch["image"].dtype == torch.float16
    before = batch["image"].clone()
    after = dm.on_after_batch_transfer(dict(batch), 0)["image"]
    torch.testing.assert_close(after, before.float())  # only the cast, no second augmentation


@pytest.mark.parametrize(("precision", "dtype"), [
    ("32-true", torch.float32), ("bf16-mixed", torch.float32), ("bf16-true", torch.bfloat16),
    ("16-true", torch.float16), ("64-true", torch.float64)])
def test_images_leave_the_transfer_in_the_dtype_of_the_trainers_precision(
        tiny_cohort, tmp_path, precision, dtype):
    from types import SimpleNamespace

    import lightning.pytorch as pl

    dm = _datamodule(tiny_cohort(n=8), tmp_path, val_fraction=0.25, test_fraction=0.0,
                     augment=AugmentSettings(affine_probability=1.0))
    plugin = pl.Trainer(accelerator="cpu", precision=precision, logger=False).precision_plugin
    batch = plugin.convert_input(next(iter(dm.train_dataloader())))  # what Lightning does first
    for training in (False, True):  # no trainer accelerator: augmented after the transfer
        dm.trainer = SimpleNamespace(training=training,  # type: ignore[assignment]
                                     precision_plugin=plugin)
        image = dm.on_after_batch_transfer(dict(batch), 0)["image"]
        assert image.dtype == dtype and image.shape == batch["image"].shape
        assert torch.equal(image, batch["image"].to(dtype)) != training


# -- the truth of each pair (clinical R@K) -----------------------------------------------
def _tiny_truth(folder, name="truth.jsonl"):
    """The truth of ``tiny_cohort(n=4)``: e03's report names its FLAIR finding only, so its
    T1 pair carries the normal text although the lesion is there."""
    from selip.demo.truth import FindingTruth, PairTruth, write_truth

    lesions = {"e00": ("infarct", "frontal lobe", "left"), "e01": None,
               "e02": ("infarct", "thalamus", "right"),
               "e03": ("demyelination", "parietal lobe", "left")}
    truths = [PairTruth(exam, sequence, "x", () if lesion is None else
                        (FindingTruth(*lesion, 10, (10, 8), 1, "hyperintense signal"),))
              for exam, lesion in lesions.items() for sequence in ("t1", "flair")]
    write_truth(truths, folder / name)
    return {exam: frozenset([lesion] if lesion else []) for exam, lesion in lesions.items()}


def _carried(dm, keys):
    """Report text -> the truth keys its classes stand for (classes number the keys sorted)."""
    from selip.demo.truth import mirrored_key

    every = sorted({k for key in keys.values() for k in (key, mirrored_key(key))}, key=sorted)
    truth = dm.clinical_truth
    return {dm.report_table.texts[r]: {every[c] for c in row if c >= 0}
            for r, row in enumerate(truth.report_classes.tolist())}


def test_truth_classes_number_keys_and_carry_mirrored_texts_with_sides_swapped():
    from selip.demo.truth import mirrored_key, truth_classes

    left = frozenset({("infarct", "pons", "left")})
    right = frozenset({("infarct", "pons", "right")})
    both = left | right
    assert mirrored_key(left) == right and mirrored_key(both) == both
    assert mirrored_key(frozenset()) == frozenset()
    # pairs: report 0 (left), report 0 again (normal text, but truth right), report 2 (both)
    pairs, reports = truth_classes([left, right, both, None], [0, 0, 2, 2], [1, 0, 2, 2], 3)
    classes = sorted([both, left, right], key=sorted)
    assert [classes[c] for c in pairs[:3]] == [left, right, both] and pairs[3] == -1
    assert [{classes[c] for c in row} for row in reports] == [{left, right}, {right}, {both}]
    _, unflipped = truth_classes([left, right, both, None], [0, 0, 2, 2], None, 3)
    assert [{classes[c] for c in row} for row in unflipped] == [{left, right}, set(), {both}]


def test_the_truth_beside_the_manifest_is_mapped_to_pairs_and_report_ids(tiny_cohort,
                                                                        tmp_path):
    manifest = tiny_cohort(n=4)
    assert _datamodule(manifest, tmp_path).clinical_truth is None  # no truth: no metrics
    keys = _tiny_truth(manifest.parent)
    dm = _datamodule(manifest, tmp_path)  # the flip is on by default: mirrored texts too
    truth = dm.clinical_truth
    assert truth is not None and truth.pair_classes.shape == (len(dm.pairs),)
    assert truth.report_classes.shape[0] == len(dm.report_table)
    classes = truth.pair_classes.tolist()
    for pair in dm.pairs:  # a pair's class is its exam's key, carried by its report id
        same = [p.sample_id for p in dm.pairs if keys[p.exam_id] == keys[pair.exam_id]]
        assert {classes[i] for i in same} == {classes[pair.sample_id]}
        assert classes[pair.sample_id] >= 0
        assert classes[pair.sample_id] in truth.report_classes[pair.report_id].tolist()
    carried = _carried(dm, keys)
    assert carried["left frontal lobe: hypointense signal"] == {keys["e00"]}
    assert carried["right frontal lobe: hypointense signal"] == {  # the mirrored text
        frozenset({("infarct", "frontal lobe", "right")})}
    assert carried["left thalamus: hyperintense signal"] == {
        frozenset({("infarct", "thalamus", "left")})}
    # the normal text: e01's pairs, e03's T1 (its finding unreported) and that one flipped
    assert carried[NORMAL_REPORT_TEXT] == {frozenset(), keys["e03"],
                                           frozenset({("demyelination", "parietal lobe",
                                                       "right")})}
    plain = _datamodule(manifest, tmp_path, augment=AugmentSettings(enabled=False))
    assert _carried(plain, keys)[NORMAL_REPORT_TEXT] == {frozenset(), keys["e03"]}


def test_a_truth_path_argument_and_pairs_missing_from_it(tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=4)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _tiny_truth(elsewhere, "pairs.jsonl")
    dm = _datamodule(manifest, tmp_path, truth=str(elsewhere / "pairs.jsonl"))
    assert dm.clinical_truth is not None and (dm.clinical_truth.pair_classes >= 0).all()
    lines = (elsewhere / "pairs.jsonl").read_text().splitlines()
    (elsewhere / "pairs.jsonl").write_text("\n".join(lines[2:]) + "\n")  # e00 is missing
    with pytest.warns(UserWarning, match="2 of 8 pairs have no truth line"):
        partial = _datamodule(manifest, tmp_path, truth=str(elsewhere / "pairs.jsonl"))
    assert partial.clinical_truth is not None
    assert partial.clinical_truth.pair_classes.tolist()[:2] == [-1, -1]
    (elsewhere / "none.jsonl").write_text("")
    with pytest.warns(UserWarning, match="no clinical retrieval metrics"):
        assert _datamodule(manifest, tmp_path,
                           truth=str(elsewhere / "none.jsonl")).clinical_truth is None
    with pytest.raises(FileNotFoundError, match=r"absent\.jsonl"):
        _datamodule(manifest, tmp_path, truth=str(elsewhere / "absent.jsonl"))


def test_the_demo_cohorts_truth_reaches_every_pair(tmp_path):
    from selip.demo import generate_demo_cohort, load_truth
    from selip.demo.truth import mirrored_key

    manifest = generate_demo_cohort(tmp_path / "demo", num_exams=4, progress=False)
    dm = _datamodule(manifest, tmp_path, sequences=["t1", "flair"], similarity=None)
    truth, written = dm.clinical_truth, load_truth(manifest.parent)
    assert truth is not None and (truth.pair_classes >= 0).all()
    keys = {p.sample_id: written[(p.exam_id, dm.sequences[p.sequence_index])].key
            for p in dm.pairs}
    every = sorted({k for key in keys.values() for k in (key, mirrored_key(key))}, key=sorted)
    assert any(mirrored_key(key) != key for key in keys.values())  # the case is useful
    for pair in dm.pairs:
        key = keys[pair.sample_id]
        assert int(truth.pair_classes[pair.sample_id]) == every.index(key)
        assert every.index(key) in truth.report_classes[pair.report_id].tolist()
        assert every.index(mirrored_key(key)) in truth.report_classes[
            pair.mirrored_report_id].tolist()
