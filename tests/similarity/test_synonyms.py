"""Reports written by people: tag synonyms, location synonyms and pertinent negatives
(the ``english`` preset), and that the ``paper`` preset still reads text literally."""

from dataclasses import replace

import numpy as np
import pytest

from selip.similarity import PRESETS, SimilarityConfig, SimilarityEngine, reference
from selip.similarity.config import (
    CHINESE_SIGNAL_TAGS,
    ENGLISH_SIGNAL_TAGS,
    LOCATION_SYNONYMS,
    SIGNAL_TAG_SYNONYMS,
)
from selip.similarity.findings import (
    canonical_location,
    is_negative,
    report_findings,
    signal_tag,
)
from selip.similarity.table import table_key
from selip.text.reports import Finding

ENGLISH = PRESETS["english"]


@pytest.mark.parametrize(("appearance", "tag"), [
    ("high signal", "hyperintense"),
    ("FLAIR hyperintensity measuring 14 mm", "hyperintense"),
    ("T2-bright signal, likely acute infarct", "hyperintense"),
    ("T2 prolongation", "hyperintense"),
    ("reduced ADC", "hypointense"),
    ("dark signal", "hypointense"),
    ("diffusion restriction (12 mm)", "restricted diffusion"),
    ("heterogeneous mass of high signal with vasogenic oedema", "oedema"),
    ("several small foci of increased signal", "foci"),
    ("inconspicuous", "isointense"),
    ("不均匀混杂信号", "mixed signal"),
    ("长T2信号", "高信号"),
    ("ADC值减低", "低信号"),
    ("DWI高信号（弥散受限）", "restricted diffusion"),
])
def test_tag_synonyms_name_one_tag(appearance, tag):
    assert signal_tag(appearance, SIGNAL_TAG_SYNONYMS) == tag


def test_a_tag_without_synonyms_reads_as_before():
    tags = CHINESE_SIGNAL_TAGS + ENGLISH_SIGNAL_TAGS
    assert signal_tag("high signal", tags) == "high signal"  # literal: no tag found
    assert signal_tag("长T2信号", tags) == "长t2信号"
    assert signal_tag("a|b", ("x|a",)) == "x"


@pytest.mark.parametrize(("location", "canonical"), [
    ("left basal ganglia", "left basal ganglia"),
    ("lentiform nucleus on the left", "left basal ganglia"),
    ("Putamen (right)", "right basal ganglia"),
    ("right-sided thalamic region", "right thalamus"),
    ("white matter adjacent to the left lateral ventricle", "left periventricular white matter"),
    ("Left hemicerebellum", "left cerebellar hemisphere"),
    ("cerebellar hemisphere", "cerebellar hemisphere"),
    ("左基底节", "左侧基底节区"),
    ("右侧额叶皮层下", "右侧额叶"),
    ("左侧脑室体旁白质", "左侧侧脑室旁白质"),
    ("pons", "pons"),  # no synonym: as written
])
def test_locations_read_through_their_synonyms(location, canonical):
    assert canonical_location(location, LOCATION_SYNONYMS) == canonical
    assert canonical_location(location, ()) == location


def test_pertinent_negatives_are_not_findings_under_english_only():
    text = "left thalamus: high signal; no midline shift; ventricles normal in size"
    assert report_findings(text, ENGLISH).findings == (Finding("left thalamus", "high signal"),)
    assert len(report_findings(text, PRESETS["paper"]).findings) == 3  # the authors' rule
    assert report_findings("FLAIR: no midline shift; no haemorrhage.", ENGLISH).normal
    assert report_findings("在左侧丘脑表现为高信号，中线结构居中，未见出血", ENGLISH).findings == \
        (Finding("左侧丘脑", "高信号"),)
    # a finding with a location is never a negative
    assert not is_negative(Finding("left thalamus", "no restricted diffusion"), ENGLISH)
    assert is_negative(Finding("", "No hydrocephalus"), ENGLISH)


def test_english_ranks_a_paraphrase_above_another_finding():
    same = ["left lentiform nucleus: T2 prolongation measuring 14 mm",
            "basal ganglia on the left: high signal, likely acute infarct"]
    other = ["right basal ganglia: high signal", "left thalamus: low signal"]
    s = SimilarityEngine(ENGLISH).matrix(same, same + other)
    assert s[0, 1] > max(s[0, 2], s[0, 3])
    # the paper preset reads words literally: the paraphrase scores 0 (locations and tags
    # differ as written)
    literal = SimilarityEngine(PRESETS["paper"]).matrix(same)
    assert literal[0, 1] == 0.0


def test_engine_equals_reference_on_written_reports():
    reports = ["FLAIR: left lentiform nucleus: FLAIR hyperintensity, 14 mm; no midline shift.\n"
               "DWI: basal ganglia on the left: diffusion restriction.",
               "Thalamus (right): reduced ADC; ventricles normal in size",
               "在左基底节表现为长T2信号（约12mm），中线结构居中",
               "No focal lesion. Ventricles and sulci are normal for age.",
               "right-sided temporal region: oedema surrounding a mass of high signal"]
    for config in (ENGLISH, replace(ENGLISH, combine="product", syntax="charset_dice")):
        got = SimilarityEngine(config).matrix(reports)
        expected = np.array([[reference.pair_similarity(a, b, config) for b in reports]
                             for a in reports])
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_new_settings_are_in_the_table_key():
    base = SimilarityConfig()
    key = table_key(["a: b"], base)
    for change in ({"location_synonyms": (("x", "y"),)}, {"negative_patterns": ("^no",)},
                   {"signal_tags": ("hyperintense|high signal",)}):
        assert table_key(["a: b"], replace(base, **change)) != key, change
