"""One demo exam: its plan (label, lesions, orientation, report) and its volumes.

Randomness is keyed by ``(seed, stream, index)`` through :class:`numpy.random.SeedSequence`,
so exam ``k`` is the same whatever the cohort size, and planning (cheap: what the exam
shows and its report) is separate from synthesis (the volumes). The report has a stream of
its own, so its wording never changes the volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selip.demo.anatomy import (
    GRID_SHAPE,
    TISSUES,
    Subject,
    grid_affine,
    grid_points,
    load_atlas,
    sample_subject,
    subject_to_template,
)
from selip.demo.chinese import check_language
from selip.demo.contrasts import (
    SEQUENCES,
    acquire,
    paint,
    random_texture,
    tissue_images,
)
from selip.demo.lesions import (
    OEDEMA,
    SIGNATURES,
    Lesion,
    core_weight,
    oedema_weight,
    push_tissue,
    sample_lesions,
)
from selip.demo.writer import Size, WrittenReport, write_report
from selip.text.reports import Finding

ORIENTATIONS = ("RAS", "LAS")
#: Share of exams written with the x axis flipped (LAS) to exercise reorientation.
LAS_FRACTION = 0.2
# Labels are dealt in blocks of six exams, shuffled per block: one third normal, every
# label in every block (so small demos hold every class), yet exam k still depends only
# on (seed, k).
_LABEL_BLOCK = ("normal", "normal", "infarct", "infarct", "tumour", "demyelination")
_LABEL_STREAM, _PLAN_STREAM, _IMAGE_STREAM, _REPORT_STREAM = 0, 1, 2, 3


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is a non-negative integer, else raise ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def exam_label(seed: int, index: int) -> str:
    """The diagnosis of exam ``index`` (one of :data:`~selip.demo.lesions.LABELS`)."""
    block, position = divmod(index, len(_LABEL_BLOCK))
    order = _rng(seed, _LABEL_STREAM, block).permutation(len(_LABEL_BLOCK))
    return _LABEL_BLOCK[order[position]]


@dataclass(frozen=True, eq=False)
class ExamPlan:
    """What exam ``index`` of cohort ``seed`` shows; cheap to compute, no volumes."""

    seed: int
    index: int
    label: str
    orientation: str
    lesions: tuple[Lesion, ...]

    @property
    def exam_id(self) -> str:
        """The manifest id, ``demo_0000`` style."""
        return f"demo_{self.index:04d}"

    def subject(self) -> Subject:
        """How the subject's head sits relative to the template: the first draw of the
        exam's image stream, the same one :func:`synthesize_exam` makes."""
        return sample_subject(_rng(self.seed, _IMAGE_STREAM, self.index))

    def sizes_mm(self) -> tuple[Size, ...]:
        """Per lesion, its (longest, second-longest) extent in mm as the image shows it:
        the template extent scaled by the subject's head size, rounded."""
        scale = float(self.subject().scale.mean())
        return tuple((max(1, round(a * scale)), max(1, round(b * scale)))
                     for a, b in (lesion.extent_mm() for lesion in self.lesions))

    def written(self, language: str = "en") -> WrittenReport:
        """The report as written in ``language``: the exam's style and wording, drawn from
        its own report stream (:func:`selip.demo.writer.write_report`)."""
        rng = _rng(self.seed, _REPORT_STREAM, self.index)
        return write_report(self.lesions, self.sizes_mm(), rng, check_language(language))

    def findings(self, language: str = "en") -> dict[str, list[Finding]]:
        """Per sequence column, the written findings, one per lesion in written order
        (empty lists when normal), in English (``en``) or Chinese (``zh``)."""
        written = self.written(language)
        return {s: [f for _, f in written.findings.get(s, ())] for s in SEQUENCES}

    def canonical_findings(self, language: str = "en") -> dict[str, list[Finding]]:
        """Per sequence column, one canonical finding per lesion (the truth's fixed
        vocabulary, no synonyms: what the demo wrote before reports were written)."""
        return {s: [lesion.finding(s, language) for lesion in self.lesions] for s in SEQUENCES}

    def report(self, language: str = "en") -> str:
        """The report: English free text in the section grammar (a normal sentence for a
        normal exam), or for ``zh`` the authors' Chinese JSON report."""
        return self.written(language).render(language)


def plan_exam(seed: int, index: int) -> ExamPlan:
    """Plan exam ``index`` of the cohort drawn with ``seed``."""
    seed = check_seed(seed)
    if index < 0:
        raise ValueError(f"exam index must be >= 0, got {index}")
    label = exam_label(seed, index)
    rng = _rng(seed, _PLAN_STREAM, index)
    orientation = "LAS" if rng.random() < LAS_FRACTION else "RAS"
    lesions = sample_lesions(label, rng, load_atlas())
    return ExamPlan(seed, index, label, orientation, lesions)


@dataclass(frozen=True, eq=False)
class ExamVolumes:
    """The synthesised volumes of one exam, already in the exam's orientation.

    Attributes:
        images: sequence -> ``(64, 76, 64)`` int16 (array axes = voxel axes i, j, k).
        mask: ``(64, 76, 64)`` uint8, 1 = lesion: the core of infarcts and plaques, and
            for a tumour its core *and* the oedema around it (BraTS's "whole tumour"),
            since the oedema is as bright as the core on T2 and FLAIR.
        affine: ``(4, 4)`` voxel -> world (RAS+ mm) affine shared by all of them.
        tissues: ``(5, 64, 76, 64)`` float32 tissue fractions (for checks), same axes.
    """

    images: dict[str, np.ndarray]
    mask: np.ndarray
    affine: np.ndarray
    tissues: np.ndarray


def _lesion_weight(lesion: Lesion, points: np.ndarray, tissues: np.ndarray) -> np.ndarray:
    core = core_weight(lesion, points)
    if lesion.kind == "tumour":
        # A tumour replaces whatever it grows into, but stays inside the skull.
        return core * load_atlas().sample_intracranial(points)
    # Infarcts and plaques are parenchymal: they do not paint CSF.
    return core * np.clip(1.25 * (tissues[0] + tissues[1]), 0.0, 1.0)


def synthesize_exam(plan: ExamPlan) -> ExamVolumes:
    """Synthesise the volumes of a planned exam (~0.2 s on one core)."""
    rng = _rng(plan.seed, _IMAGE_STREAM, plan.index)
    points = subject_to_template(sample_subject(rng), grid_points())  # (3, X, Y, Z) MNI
    tissues = load_atlas().sample(push_tissue(plan.lesions, points))
    images = tissue_images(tissues)
    mask = np.zeros(GRID_SHAPE, dtype=bool)
    for lesion in plan.lesions:
        weight = _lesion_weight(lesion, points, tissues)
        texture = None
        if lesion.kind == "tumour":
            white, grey = tissues[TISSUES.index("wm")], tissues[TISSUES.index("gm")]
            # Vasogenic oedema spreads along white matter, much less into cortex.
            rim = oedema_weight(lesion, points) * np.clip(white + 0.5 * grey, 0.0, 1.0)
            paint(images, rim, OEDEMA)
            mask |= rim > 0.5
            texture = random_texture(rng, GRID_SHAPE)
        paint(images, weight, SIGNATURES[lesion.kind], texture)
        mask |= weight > 0.5
    volumes = acquire(images, rng)
    return orient(ExamVolumes(images=dict(zip(SEQUENCES, volumes, strict=True)),
                              mask=mask.astype(np.uint8), affine=grid_affine(),
                              tissues=tissues), plan.orientation)


def orient(volumes: ExamVolumes, orientation: str) -> ExamVolumes:
    """Re-express RAS volumes in ``orientation``; the world-space content is unchanged.

    LAS flips the first array axis and the affine's x column together, so every voxel
    keeps its world position.
    """
    if orientation == "RAS":
        return volumes
    if orientation != "LAS":
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, GRID_SHAPE[0] - 1.0  # new i -> old i: (n - 1) - i
    return ExamVolumes(images={s: v[::-1].copy() for s, v in volumes.images.items()},
                       mask=volumes.mask[::-1].copy(), affine=volumes.affine @ flip,
                       tissues=volumes.tissues[:, ::-1].copy())
