"""The shipped sequence rules classify the series the three big vendors write, the
preference settles repeats, and a bad rules file is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from selip.importer.rules import RulesError, choose, default_rules_text, load_rules
from selip.importer.series import Instance, Series

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def series(description: str, number: int = 1, *, image_type: tuple[str, ...] = (
        "ORIGINAL", "PRIMARY", "M", "ND"), slices: int = 20, orientation=AXIAL,
        b_values: tuple[float, ...] = (), **fields) -> Series:
    instances = [Instance(Path(f"{number}-{k}"), (0.0, 0.0, float(k)), orientation,
                          b_value=b_values[k % len(b_values)] if b_values else None)
                 for k in range(slices)]
    return Series("study", f"uid-{number}-{description}", description=description,
                  series_number=number, image_type=image_type, instances=instances, **fields)


# (series, expected sequence or skip reason) as Siemens, GE and Philips name them
CASES = [
    (series("localizer", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), "skip:localiser"),
    (series("AAHead_Scout_64ch"), "skip:localiser"),
    (series("t1_mpr_sag", image_type=("DERIVED", "SECONDARY", "MPR")), "skip:reformat"),
    (series("t1_se_tra", scanning_sequence=("SE",)), "t1"),
    (series("t2_tse_tra", scanning_sequence=("SE",)), "t2"),
    (series("t2_tirm_tra_dark-fluid", scanning_sequence=("SE", "IR"), inversion_time=2500.0),
     "flair"),
    (series("ep2d_diff_3scan_trace", image_type=("ORIGINAL", "PRIMARY", "DIFFUSION",
                                                 "TRACEW"), b_values=(0.0, 1000.0)), "dwi"),
    (series("ep2d_diff_3scan_trace_ADC", image_type=("DERIVED", "PRIMARY", "DIFFUSION",
                                                     "ADC")), "adc"),
    (series("Ax T2 FLAIR"), "flair"),
    (series("Ax DWI", b_values=(0.0, 1000.0)), "dwi"),
    (series("Apparent Diffusion Coefficient (mm2/s)", image_type=("DERIVED", "PRIMARY")),
     "adc"),
    (series("Exponential Apparent Diffusion Coefficient"), "skip:derived"),
    (series("Ax T1 FLAIR"), "t1"),
    (series("Ax T1 +C"), "t1c"),
    (series("T2W_FLAIR"), "flair"),
    (series("T1W_SE"), "t1"),
    (series("DWI", b_values=(0.0, 1000.0)), "dwi"),
    (series("dADC"), "adc"),
    (series("T2W_TSE"), "t2"),
    (series("sT1W_3D_TFE", contrast_agent="Gadovist"), "t1c"),
    (series("t1_se_tra_post"), "t1c"),
    (series("T1 AX POST GAD"), "t1c"),
    # pre-contrast T1s name the agent too, and "posterior" is not "post"
    (series("T1 pre contrast"), "t1"),
    (series("T1 AX PRE GAD"), "t1"),
    (series("T1 non-contrast"), "t1"),
    (series("T1 SE posterior fossa"), "t1"),
    (series("t1_mprage_sag_w/o"), "t1"),
    (series("T1_SE_pre", contrast_agent="Gadovist"), "t1"),
    # no name that says it: the headers decide
    (series("Sequence 7", scanning_sequence=("IR",), inversion_time=2200.0), "flair"),
    (series("Sequence 8", b_values=(0.0, 800.0)), "dwi"),
    (series("Sequence 9", scanning_sequence=("SE",), echo_time=12.0, repetition_time=550.0),
     "t1"),
    (series("Sequence 10", scanning_sequence=("SE",), echo_time=95.0,
            repetition_time=4500.0), "t2"),
    (series("swi_3d"), None),
    (series("pd_tse_cor", scanning_sequence=("SE",), echo_time=30.0,
            repetition_time=3000.0), None),
]


@pytest.mark.parametrize(("record", "expected"), CASES,
                         ids=[c[0].description for c in CASES])
def test_shipped_rules_classify_each_vendors_series(record: Series, expected: str | None
                                                    ) -> None:
    claim = load_rules().classify(record)
    if expected is None:
        assert claim.unclaimed, claim
    elif expected.startswith("skip:"):
        assert claim.sequence is None
        assert claim.skip is not None and claim.skip.startswith(expected[5:]), claim
    else:
        assert claim.sequence == expected, claim


def test_a_repeat_wins_by_the_latest_preference_and_the_choice_is_said() -> None:
    rules = load_rules()
    first, repeat = series("t2_tirm_tra_dark-fluid", 5), series("t2_tirm_tra_dark-fluid", 9)
    decision = choose("flair", [(s, rules.classify(s)) for s in (first, repeat)],
                      rules.prefer)
    assert decision.chosen is repeat
    assert "#9" in decision.note and "#5" in decision.note and "latest" in decision.note


def test_the_axial_original_wins_over_a_sagittal_series_of_the_same_rule() -> None:
    rules = load_rules()
    sagittal, axial = series("t1_se", 3, orientation=SAGITTAL), series("t1_se", 2)
    decision = choose("t1", [(s, rules.classify(s)) for s in (sagittal, axial)], rules.prefer)
    assert decision.chosen is axial and "axial" in decision.note


def test_an_earlier_rule_beats_a_later_one() -> None:
    rules = load_rules()
    by_name = series("t1_se_tra", 4)  # t1-by-name
    by_timing = series("Sequence 9", 8, scanning_sequence=("SE",), echo_time=12.0,
                       repetition_time=550.0)  # t1-by-timing, later in the file
    decision = choose("t1", [(s, rules.classify(s)) for s in (by_timing, by_name)],
                      rules.prefer)
    assert decision.chosen is by_name and "t1-by-name" in decision.note


def test_a_tie_no_rule_settles_is_reported_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: t2\n    sequence: t2\n    description: [t2]\n")
    rules = load_rules(path)
    assert rules.prefer == []
    twins = [series("t2 a", 3), series("t2 b", 4)]
    decision = choose("t2", [(s, rules.classify(s)) for s in twins], rules.prefer)
    assert decision.chosen is None
    assert "2 candidates and no rule to choose" in decision.note


def test_user_rules_extending_the_default_are_tried_first(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("extends: default\nrules:\n"
                    "  - name: our-swi\n    sequence: swi\n    description: ['swi']\n")
    rules = load_rules(path)
    assert rules.classify(series("swi_3d")).sequence == "swi"
    assert rules.classify(series("t2_tse_tra")).sequence == "t2"  # shipped rules still there
    assert rules.prefer == load_rules().prefer


@pytest.mark.parametrize(("text", "message"), [
    ("rules: [{name: a, sequence: t2}]", "rule 'a' has no condition"),
    ("rules: [{name: a, sequence: t9, description: x}]", "unknown sequence 't9'"),
    ("rules: [{name: a, sequence: t2, skip: x, description: x}]", "exactly one of"),
    ("rules: [{name: a, sequence: t2, descripton: x}]", "unknown field(s) descripton"),
    ("rules: [{name: a, sequence: t2, description: '(unclosed'}]", "not a valid regular"),
    ("rules: [{name: a, sequence: t2, echo_time: 30}]", "expected {min: N, max: N}"),
    ("rules: [{name: a, sequence: t2, plane: oblique}]", "plane: expected"),
    ("prefer: [newest]\nrules: []", "unknown criterion newest"),
    ("extends: other\nrules: []", "only 'default'"),
    ("rules: {a: 1}", "a 'rules:' list"),
    ("rules: [a\n", "not valid YAML"),
])
def test_a_bad_rules_file_is_named_with_rule_and_field(tmp_path: Path, text: str,
                                                       message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_the_shipped_rules_file_documents_every_condition() -> None:
    text = default_rules_text()
    for condition in ("description", "not_description", "image_type", "scanning_sequence",
                      "inversion_time", "b_value", "contrast", "plane", "prefer", "extends"):
        assert condition in text


def test_the_docs_example_of_site_rules_loads_and_claims(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "docs" / "import.md").read_text()
    start = readme.index("```yaml\nextends: default")
    block = readme[start + len("```yaml\n"):readme.index("```", start + 7)]
    path = tmp_path / "site.yaml"
    path.write_text(block)
    rules = load_rules(path)
    assert rules.classify(series("swi_3d_tra")).sequence == "swi"
    assert rules.classify(series("t1_space_dark_fluid_sag")).sequence == "flair"
    path.write_text(block.replace("description: ['swi'", "descripton: ['swi'"))
    with pytest.raises(RulesError, match=r"site\.yaml: rule 'our-swi': unknown field\(s\) "
                                         r"descripton \(known: "):
        load_rules(path)
