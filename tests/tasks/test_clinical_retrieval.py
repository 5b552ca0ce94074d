"""`selip fit` on the demo cohort grades retrieval by the truth (clinical R@K, docs/design.md §6);
without a truth file nothing clinical is logged."""

from __future__ import annotations

from pathlib import Path

from selip.cli import main
from selip.demo import TRUTH_FILE, generate_demo_cohort
from tests.tasks.conftest import tiny_overrides

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"
CLINICAL = {f"{name}_R@{k}" for name in ("i2t_clinical", "t2i_clinical", "chance_i2t_clinical",
                                          "chance_t2i_clinical", "prior_i2t_clinical")
            for k in (1, 5, 10)}


def _fit(manifest: Path, root: Path, cache: Path) -> set[str]:
    """One epoch of tiny networks; returns the TensorBoard scalar tags (val/ prefix off)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code = main(["fit", "--config", str(DEMO),
                 *tiny_overrides(manifest, root, **{"--data.cache_dir": str(cache)}),
                 "--trainer.max_epochs", "1"])
    assert code == 0
    [version] = (root / "runs" / "demo").iterdir()
    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()
    return {t.removeprefix("val/") for t in events.Tags()["scalars"] if t.startswith("val/")}


def _summary_rows(out: str) -> dict[str, list[str]]:
    """The end-of-run table: figure -> [model, chance, prior] (and other metrics' values)."""
    lines = out.split("final validation metrics:")[1].splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines if line.strip()}


def test_fit_on_the_demo_logs_clinical_recall_and_without_truth_none(tmp_path, capsys):
    manifest = generate_demo_cohort(tmp_path / "demo", num_exams=8, progress=False)
    tags = _fit(manifest, tmp_path / "with", tmp_path / "cache")
    assert tags >= CLINICAL, CLINICAL - tags
    rows = _summary_rows(capsys.readouterr().out)
    for k in (1, 5, 10):  # the model's figure, its chance and the frequency prior
        model, chance, prior = rows[f"i2t_clinical_R@{k}"]
        assert 0.0 <= float(model) <= 1.0 and 0.0 < float(chance) <= 1.0
        assert 0.0 <= float(prior) <= 1.0
        assert rows[f"t2i_clinical_R@{k}"][2] == "-"  # no prior for text→image
        assert float(rows[f"i2t_clinical_R@{k}"][1]) >= float(rows[f"i2t_R@{k}"][1])

    (manifest.parent / TRUTH_FILE).unlink()  # a real archive: no truth file
    tags = _fit(manifest, tmp_path / "without", tmp_path / "cache")
    assert "i2t_R@1" in tags and not any("clinical" in tag for tag in tags)
    out = capsys.readouterr().out
    assert "i2t_R@1" in _summary_rows(out) and "clinical" not in out

