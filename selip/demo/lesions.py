"""Lesions of the demo cohort: kinds, named locations, MRI signatures and soft masks.

Every lesion sits at a named anatomical location with a side (left = negative MNI x) and
is described by blobs (spheres in template MNI space). Its signature gives, per sequence,
the appearance written in the report and the tissue value painted into the image, so the
text and the image agree by construction.

Kinds and their canonical appearances (the truth's vocabulary; the report writer,
:mod:`selip.demo.writer`, words each with synonyms, sizes and hedges):

- infarct: T1 ``isointense signal``; T2, FLAIR ``hyperintense signal``;
  DWI ``restricted diffusion``; ADC ``hypointense signal``.
- tumour: T1 ``hypointense signal``; T2, FLAIR ``hyperintense signal with surrounding
  oedema``; DWI, ADC ``mixed signal``.
- demyelination: T1, DWI, ADC ``isointense signal``; T2, FLAIR ``multiple hyperintense
  foci``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selip.demo.anatomy import TissueAtlas
from selip.demo.chinese import check_language, chinese_finding
from selip.text.reports import Finding

#: Diagnosis labels of the demo cohort (``normal`` exams have no lesion).
LABELS = ("normal", "infarct", "tumour", "demyelination")
SIDES = ("left", "right")

#: Region name -> MNI centre (mm) in the LEFT hemisphere; the right one mirrors x.
REGIONS: dict[str, tuple[float, float, float]] = {
    "frontal lobe": (-28.0, 30.0, 28.0),
    "parietal lobe": (-30.0, -48.0, 38.0),
    "temporal lobe": (-44.0, -16.0, -16.0),
    "occipital lobe": (-22.0, -84.0, 8.0),
    "basal ganglia": (-24.0, 4.0, 2.0),
    "thalamus": (-12.0, -18.0, 6.0),
    "periventricular white matter": (-25.0, -20.0, 24.0),
    "cerebellar hemisphere": (-28.0, -64.0, -34.0),
}
#: Where each kind occurs: infarcts in vascular territories, tumours in the lobes,
#: demyelinating plaques around the lateral ventricles.
KIND_REGIONS: dict[str, tuple[str, ...]] = {
    "infarct": ("basal ganglia", "thalamus", "frontal lobe", "parietal lobe", "occipital lobe",
                "cerebellar hemisphere"),
    "tumour": ("frontal lobe", "parietal lobe", "temporal lobe", "occipital lobe",
               "cerebellar hemisphere"),
    "demyelination": ("periventricular white matter",),
}


@dataclass(frozen=True)
class Signature:
    """How a tissue looks: per sequence, the report appearance and the image value.

    ``texture`` is the amplitude of a smooth random modulation (``mixed signal``);
    values are on the scale of :data:`selip.demo.contrasts.TISSUE_VALUES`.
    """

    appearance: dict[str, str]
    value: dict[str, float]
    texture: dict[str, float]


def _signature(rows: dict[str, tuple[str, float, float]]) -> Signature:
    return Signature(appearance={s: r[0] for s, r in rows.items()},
                     value={s: r[1] for s, r in rows.items()},
                     texture={s: r[2] for s, r in rows.items()})


_HYPER, _HYPO, _ISO = "hyperintense signal", "hypointense signal", "isointense signal"
_OEDEMA, _MIXED, _FOCI = (
    "hyperintense signal with surrounding oedema", "mixed signal", "multiple hyperintense foci")
# Values against normal tissue (GM / WM): T1 620/820, T2 880/640, FLAIR 820/640,
# DWI 720/640, ADC 830/720 (1e-6 mm^2/s).
SIGNATURES: dict[str, Signature] = {
    # Acute infarct: cytotoxic oedema restricts diffusion (DWI bright, ADC low), T2/FLAIR
    # mildly bright, T1 barely changed.
    "infarct": _signature({"t1": (_ISO, 660.0, 0.0), "t2": (_HYPER, 1350.0, 0.0),
                           "flair": (_HYPER, 1300.0, 0.0), "dwi": ("restricted diffusion",
                                                                   2000.0, 0.0),
                           "adc": (_HYPO, 380.0, 0.0)}),
    # Tumour core: long T1/T2, heterogeneous cellularity (mixed DWI/ADC).
    "tumour": _signature({"t1": (_HYPO, 380.0, 0.0), "t2": (_OEDEMA, 1350.0, 60.0),
                          "flair": (_OEDEMA, 1250.0, 60.0), "dwi": (_MIXED, 800.0, 300.0),
                          "adc": (_MIXED, 1100.0, 450.0)}),
    # Demyelinating plaques: bright on T2/FLAIR, inconspicuous on T1 and diffusion.
    "demyelination": _signature({"t1": (_ISO, 780.0, 0.0), "t2": (_FOCI, 1350.0, 0.0),
                                 "flair": (_FOCI, 1300.0, 0.0), "dwi": (_ISO, 660.0, 0.0),
                                 "adc": (_ISO, 800.0, 0.0)}),
}
#: Vasogenic oedema around a tumour: FLAIR/T2 bright, T1 slightly dark, ADC raised.
OEDEMA = _signature({"t1": (_HYPO, 660.0, 0.0), "t2": (_HYPER, 1250.0, 0.0),
                     "flair": (_HYPER, 1150.0, 0.0), "dwi": (_ISO, 690.0, 0.0),
                     "adc": (_HYPER, 1300.0, 0.0)})


@dataclass(frozen=True, eq=False)
class Lesion:
    """One lesion, in template MNI space.

    Attributes:
        kind: ``infarct``, ``tumour`` or ``demyelination``.
        side: ``left`` (MNI x < 0) or ``right``.
        region: a key of :data:`REGIONS`.
        blobs: ``(n, 4)``: centre x, y, z and radius (mm) of the spheres it is made of.
        oedema_mm: thickness of the oedema rim beyond the core (tumours; 0 = none).
        push: mass-effect strength in [0, 1) (tumours; 0 = none).
    """

    kind: str
    side: str
    region: str
    blobs: np.ndarray
    oedema_mm: float = 0.0
    push: float = 0.0

    @property
    def location(self) -> str:
        """The location as written in the report, e.g. ``left basal ganglia``."""
        return f"{self.side} {self.region}"

    def extent_mm(self) -> tuple[float, float]:
        """The lesion's two largest extents in template mm: the longest and second-longest
        sides of the box around its blobs, or for plaques the largest focus's diameter
        (a report gives the largest plaque's size)."""
        if self.kind == "demyelination":
            diameter = 2.0 * float(self.blobs[:, 3].max())
            return diameter, diameter
        low = (self.blobs[:, :3] - self.blobs[:, 3:4]).min(axis=0)
        high = (self.blobs[:, :3] + self.blobs[:, 3:4]).max(axis=0)
        sides = np.sort(high - low)[::-1]
        return float(sides[0]), float(sides[1])

    def finding(self, sequence: str, language: str = "en") -> Finding:
        """The canonical finding of this lesion on ``sequence`` (the truth's wording, no
        synonyms), in English (``en``) or in Chinese (``zh``: ``左侧丘脑`` / ``高信号``,
        see :mod:`selip.demo.chinese`)."""
        appearance = SIGNATURES[self.kind].appearance[sequence]
        if check_language(language) == "zh":
            return chinese_finding(self.side, self.region, appearance)
        return Finding(self.location, appearance)


def _centre(region: str, side: str, rng: np.random.Generator) -> np.ndarray:
    centre = np.asarray(REGIONS[region], dtype=np.float64)
    if side == "right":
        centre[0] = -centre[0]
    return centre + np.clip(rng.normal(0.0, 3.0, size=3), -6.0, 6.0)


def _infarct(region: str, side: str, rng: np.random.Generator) -> Lesion:
    # A main sphere and 1-2 satellites overlapping it: an irregular territory.
    radius = rng.uniform(9.0, 16.0)
    centre = _centre(region, side, rng)
    blobs = [np.append(centre, radius)]
    for _ in range(rng.integers(1, 3)):
        direction = rng.normal(size=3)
        offset = 0.7 * radius * direction / np.linalg.norm(direction)
        blobs.append(np.append(centre + offset, radius * rng.uniform(0.5, 0.8)))
    return Lesion("infarct", side, region, np.asarray(blobs))


def _tumour(rng: np.random.Generator) -> Lesion:
    region = str(rng.choice(KIND_REGIONS["tumour"]))
    side = str(rng.choice(SIDES))
    blobs = np.append(_centre(region, side, rng), rng.uniform(14.0, 22.0))[None, :]
    return Lesion("tumour", side, region, blobs, oedema_mm=float(rng.uniform(5.0, 12.0)),
                  push=float(rng.uniform(0.3, 0.5)))


def _plaques(side: str, rng: np.random.Generator, atlas: TissueAtlas) -> Lesion:
    region = "periventricular white matter"
    centre = _centre(region, side, rng)
    # Rejection-sample foci in white matter around the ventricle's body.
    candidates = centre[:, None] + rng.uniform(-16.0, 16.0, size=(3, 64))
    white = atlas.sample(candidates)[1] > 0.6
    chosen = candidates[:, white][:, : int(rng.integers(4, 9))]
    if chosen.shape[1] == 0:  # never seen, but a plaque must exist: fall back to the centre
        chosen = centre[:, None]
    radii = rng.uniform(4.5, 7.0, size=chosen.shape[1])
    return Lesion("demyelination", side, region, np.column_stack([chosen.T, radii]))


def sample_lesions(label: str, rng: np.random.Generator, atlas: TissueAtlas
                   ) -> tuple[Lesion, ...]:
    """Draw the lesions of an exam with diagnosis ``label`` (one of :data:`LABELS`)."""
    if label == "normal":
        return ()
    if label == "infarct":
        count = 1 if rng.random() < 0.75 else 2
        regions = rng.choice(KIND_REGIONS["infarct"], size=count, replace=False)
        return tuple(_infarct(str(r), str(rng.choice(SIDES)), rng) for r in regions)
    if label == "tumour":
        return (_tumour(rng),)
    if label == "demyelination":
        draw = rng.random()
        sides = ("left",) if draw < 0.3 else ("right",) if draw < 0.6 else SIDES
        return tuple(_plaques(side, rng, atlas) for side in sides)
    raise ValueError(f"unknown demo label {label!r}; expected one of {LABELS}")


def _ramp(signed_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """1 well inside (positive), 0 outside, linear over ``edge_mm``: partial volume."""
    return np.clip(signed_mm / edge_mm + 0.5, 0.0, 1.0).astype(np.float32)


def _distances(lesion: Lesion, points: np.ndarray) -> np.ndarray:
    """Distance (mm) of points ``(3, *S)`` to each blob centre -> ``(n, *S)``."""
    centres = lesion.blobs[:, :3].reshape((-1, 3) + (1,) * (points.ndim - 1))
    return np.sqrt(((points[None] - centres) ** 2).sum(axis=1))


def core_weight(lesion: Lesion, points_mni: np.ndarray, edge_mm: float = 2.0) -> np.ndarray:
    """Soft lesion occupancy ``(*S)`` in [0, 1] at MNI points ``(3, *S)``."""
    radii = lesion.blobs[:, 3].reshape((-1,) + (1,) * (points_mni.ndim - 1))
    return _ramp(radii - _distances(lesion, points_mni), edge_mm).max(axis=0)


def oedema_weight(lesion: Lesion, points_mni: np.ndarray, edge_mm: float = 4.0) -> np.ndarray:
    """Soft occupancy ``(*S)`` of the oedema rim (core excluded); zeros if none."""
    if lesion.oedema_mm <= 0.0:
        return np.zeros(points_mni.shape[1:], dtype=np.float32)
    outer = lesion.blobs[:, 3].reshape((-1,) + (1,) * (points_mni.ndim - 1)) + lesion.oedema_mm
    shell = _ramp(outer - _distances(lesion, points_mni), edge_mm).max(axis=0)
    return shell * (1.0 - core_weight(lesion, points_mni))


def push_tissue(lesions: tuple[Lesion, ...], points_mni: np.ndarray) -> np.ndarray:
    """Mass effect: where to read the template so tissue is pushed away from tumours.

    A point at distance r from a tumour centre reads the template at r * (1 - a e^(-r^2/s^2))
    (s = 1.6 x radius), closer to the centre, so surrounding anatomy appears displaced
    outward. The map is monotonic in r for a < 1, so nothing folds.

    Args:
        lesions: the exam's lesions; those with ``push == 0`` have no effect.
        points_mni: ``(3, *S)`` template points before the mass effect.

    Returns:
        ``(3, *S)`` template points to sample tissue from.
    """
    for lesion in lesions:
        if lesion.push <= 0.0:
            continue
        centre = lesion.blobs[0, :3].reshape((3,) + (1,) * (points_mni.ndim - 1))
        reach = 1.6 * lesion.blobs[0, 3]
        offset = points_mni - centre
        squared = (offset**2).sum(axis=0) / reach**2
        points_mni = centre + offset * (1.0 - lesion.push * np.exp(-squared))
    return points_mni
