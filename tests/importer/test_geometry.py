"""A series that is not a regular volume is named before conversion, with the reason."""

from __future__ import annotations

from pathlib import Path

from selip.importer.geometry import volume_problem
from selip.importer.series import Instance, Series

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def make(positions: list[float], orientations: list[tuple[float, ...]] | None = None,
         per_position: int = 1) -> Series:
    orientations = orientations or [AXIAL] * len(positions)
    instances = [Instance(Path(f"{k}-{r}"), (10.0, -5.0, z), o)
                 for k, (z, o) in enumerate(zip(positions, orientations, strict=True))
                 for r in range(per_position)]
    return Series("study", "series", description="test", instances=instances)


def test_a_regular_volume_passes_in_any_file_order() -> None:
    assert volume_problem(make([4.0, 0.0, 8.0, 2.0, 6.0])) is None
    assert volume_problem(make([0.0, 2.0, 4.0], per_position=2)) is None  # b0 + b1000


def test_a_single_slice_is_not_a_volume() -> None:
    assert volume_problem(make([0.0])) == "single slice, not a volume"
    assert "single slice position" in (volume_problem(make([3.0, 3.0])) or "")


def test_a_missing_slice_is_counted() -> None:
    problem = volume_problem(make([0.0, 3.0, 6.0, 12.0, 15.0, 18.0]))
    assert problem is not None and "missing slices: 1 slice(s)" in problem


def test_uneven_spacing_is_named_with_its_range() -> None:
    problem = volume_problem(make([0.0, 3.0, 6.0, 10.5, 13.5]))
    assert problem is not None and "unevenly spaced" in problem and "4.50" in problem


def test_mixed_orientations_are_refused() -> None:
    tilted = (1.0, 0.0, 0.0, 0.0, 0.9, 0.43589)
    problem = volume_problem(make([0.0, 2.0, 4.0], [AXIAL, AXIAL, tilted]))
    assert problem == "mixed orientations within the series (2 different)"


def test_a_file_missing_from_one_b_value_is_found() -> None:
    series = make([0.0, 2.0, 4.0], per_position=2)
    series.instances.pop()
    assert "uneven number of images per slice position" in (volume_problem(series) or "")


def test_no_geometry_is_named() -> None:
    series = Series("s", "x", instances=[Instance(Path("a")), Instance(Path("b"))])
    assert "ImagePositionPatient" in (volume_problem(series) or "")


def test_a_multi_frame_file_is_left_to_the_converter() -> None:
    series = Series("s", "x", instances=[Instance(Path("a"), frames=40)])
    assert volume_problem(series) is None
