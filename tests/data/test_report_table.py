"""ReportTable: ids of the unique pair texts and of their left–right mirrored texts.

A bilateral report mirrors onto the same findings in another order; that text never
occurs, so its id is the unflipped report's (a flipped pair is then a positive of the
identical unflipped one, and S between them is 1), docs/design.md §4.
"""

import numpy as np
import pytest
import torch

from selip.data.augment import AugmentSettings
from selip.data.datamodule import SelipDataModule
from selip.data.report_table import ReportTable
from selip.similarity import PRESETS
from selip.similarity.table import load_or_build
from selip.text.reports import swap_laterality
from tests.conftest import head_volume, write_manifest, write_nifti

BILATERAL_EN = "left thalamus: hyperintense signal; right thalamus: hyperintense signal"
BILATERAL_ZH = "在左侧基底节区表现为高信号，在右侧基底节区表现为高信号"
UNILATERAL_EN = "left frontal lobe: hypointense signal"
UNILATERAL_ZH = "在左侧额叶表现为低信号，在脑桥表现为等信号"
ASYMMETRIC = "left thalamus: hyperintense signal; right thalamus: hypointense signal"
NORMAL = "No abnormality detected."
TEXTS = [BILATERAL_EN, BILATERAL_ZH, UNILATERAL_EN, UNILATERAL_ZH, ASYMMETRIC, NORMAL]


@pytest.fixture
def table() -> ReportTable:
    return ReportTable(TEXTS, with_mirrored=True)


@pytest.mark.parametrize("text", [BILATERAL_EN, BILATERAL_ZH])
def test_a_bilateral_report_and_its_mirror_share_one_id(table, text):
    mirrored = swap_laterality(text)
    assert mirrored != text  # the findings come in the other order
    assert table.id_of(mirrored) == table.id_of(text)
    assert mirrored not in table.texts  # a text that never occurs gets no id of its own


@pytest.mark.parametrize("text", [UNILATERAL_EN, UNILATERAL_ZH, ASYMMETRIC])
def test_other_reports_mirror_onto_their_true_mirrored_text(table, text):
    mirrored = swap_laterality(text)
    assert table.id_of(mirrored) != table.id_of(text)
    assert table.texts[table.id_of(mirrored)] == mirrored


def test_ids_are_sorted_unique_texts_and_every_id_has_a_text(table):
    assert table.texts == sorted(table.texts)
    assert len(table) == len(TEXTS) + 3  # the three true mirrors; normal mirrors to itself
    for text in (*TEXTS, *(swap_laterality(t) for t in TEXTS)):
        assert 0 <= table.id_of(text) < len(table)
    assert ReportTable(TEXTS).texts == sorted(TEXTS)
    with pytest.raises(KeyError, match="not in the table"):
        ReportTable(TEXTS).id_of(swap_laterality(BILATERAL_EN))


def test_an_occurring_text_keeps_its_own_id():
    # both orders occur in the data: each is its own report, and mirrors onto the other
    other_order = "right thalamus: hyperintense signal; left thalamus: hyperintense signal"
    table = ReportTable([BILATERAL_EN, other_order], with_mirrored=True)
    assert table.texts == sorted([BILATERAL_EN, other_order])
    assert table.id_of(swap_laterality(BILATERAL_EN)) == table.id_of(other_order)


def test_hard_positives_and_similarity_treat_the_flip_as_the_same_report(tmp_path, table):
    ids = np.array([table.id_of(BILATERAL_EN), table.id_of(swap_laterality(BILATERAL_EN))])
    assert ids[0] == ids[1]  # same report id ⇒ positives of each other
    s, _ = load_or_build(tmp_path, table.texts, PRESETS["english"], progress=False)
    np.testing.assert_array_equal(np.asarray(s.matrix)[ids[:, None], ids[None, :]],
                                  np.ones((2, 2), np.float16))


def test_a_flipped_bilateral_pair_keeps_its_report_id(tmp_path):
    reports = [f"FLAIR: {BILATERAL_EN}.", f"FLAIR: {UNILATERAL_EN}."]
    rows = [{"exam_id": f"e{i}", "report": report,
             "flair": str(write_nifti(tmp_path / f"e{i}.nii.gz", head_volume(seed=i)))}
            for i, report in enumerate(reports)]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    always = AugmentSettings(flip_probability=1.0, affine_probability=0.0,
                             gamma_probability=0.0, intensity_scale=0.0)
    dm = SelipDataModule(str(manifest), cache_dir=str(tmp_path / "cache"),
                         spacing=(2.0, 2.0, 2.0), shape=(8, 12, 10), batch_size=2,
                         num_workers=0, max_length=32, progress=False, val_fraction=0.0,
                         test_fraction=0.0, augment=always)
    dm.prepare_data()
    dm.setup("fit")
    bilateral, unilateral = sorted(dm.pairs, key=lambda p: p.exam_id)
    assert bilateral.mirrored_report_id == bilateral.report_id
    assert dm.report_table.texts[unilateral.mirrored_report_id] == \
        swap_laterality(UNILATERAL_EN)
    samples = {p.exam_id: dm.datasets["train"][i] for i, p in
               enumerate(dm.datasets["train"].pairs)}
    assert int(samples["e0"]["report_id"]) == bilateral.report_id  # the flip happened, too
    ids = torch.tensor([bilateral.report_id, bilateral.mirrored_report_id])
    assert dm.similarity_table is not None
    torch.testing.assert_close(dm.similarity_table.lookup(ids), torch.ones(2, 2))
