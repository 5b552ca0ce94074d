"""Real head anatomy for the demo cohort: the MNI152 2009a template, one subject's grid.

The tissue atlas comes from nilearn's *installed package data* (never the network): the
MNI152 2009a symmetric T1 template and its grey- and white-matter maps, 1 mm isotropic,
197 x 233 x 189 voxels. The template is skull-stripped, so the tissues outside the brain
(extra-axial CSF, skull, scalp fat) are built as shells around a smoothed brain hull.

A subject is the atlas seen through a smooth world -> template map (small rotation, a
brain smaller than MNI, a shift, and a smooth random displacement of a few mm), sampled
on the demo grid: 64 x 76 x 64 voxels of 3 mm in RAS+ world space.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

#: Tissue classes of the atlas, in the order of :attr:`TissueAtlas.fractions`.
TISSUES = ("gm", "wm", "csf", "bone", "fat")
#: Demo grid: shape (x, y, z), voxel size and the world point at the grid centre. The head
#: (brain scaled by 0.82-0.92 plus ~10 mm of shells) spans < 190 mm on every axis around
#: this centre, so a centred 64^3 crop at 3 mm keeps all of it.
GRID_SHAPE = (64, 76, 64)
VOXEL_MM = 3.0
GRID_CENTRE_MM = (0.0, -14.5, 8.0)

_TEMPLATE_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
_ATLAS_STEP = 2  # atlas kept at 2 mm: ample for 3 mm output, 8x less memory than 1 mm
# Shell radii (mm outside the brain hull): CSF to 2, skull to 6, scalp fat to 9.5.
_SHELLS_MM = (2.0, 6.0, 9.5)


@dataclass(frozen=True, eq=False)
class TissueAtlas:
    """Tissue fractions in template (MNI) space on a regular 2 mm grid.

    Attributes:
        fractions: ``(5, X, Y, Z)`` float32 fractions of :data:`TISSUES`, summing to <= 1
            (the rest is air).
        intracranial: ``(X, Y, Z)`` float32, 1 inside the smoothed brain hull.
        origin_mm: ``(3,)`` MNI coordinate of voxel (0, 0, 0).
        spacing_mm: voxel size of the atlas grid.
    """

    fractions: np.ndarray
    intracranial: np.ndarray
    origin_mm: np.ndarray
    spacing_mm: float

    def sample(self, points_mni: np.ndarray) -> np.ndarray:
        """Tissue fractions at MNI points ``(3, *S)`` -> ``(5, *S)`` float32 (0 outside)."""
        index = self._index(points_mni)
        return np.stack([_interp(f, index) for f in self.fractions])

    def sample_intracranial(self, points_mni: np.ndarray) -> np.ndarray:
        """Intracranial fraction at MNI points ``(3, *S)`` -> ``(*S)`` float32."""
        return _interp(self.intracranial, self._index(points_mni))

    def _index(self, points_mni: np.ndarray) -> np.ndarray:
        origin = self.origin_mm.reshape((3,) + (1,) * (points_mni.ndim - 1))
        return (points_mni - origin) / self.spacing_mm


def _interp(volume: np.ndarray, index: np.ndarray) -> np.ndarray:
    # Linear interpolation without a spline prefilter: fractions stay within [0, 1].
    out = ndimage.map_coordinates(volume, index, order=1, mode="constant", cval=0.0,
                                  prefilter=False)
    return np.asarray(out, dtype=np.float32)


def _load_template(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One nilearn template map as ``(197, 233, 189)`` float32 in [0, 1] and its affine."""
    resource = importlib.resources.files("nilearn") / "datasets" / "data" / _TEMPLATE_FILE.format(
        kind)
    with importlib.resources.as_file(resource) as path:
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32) / 255.0  # type: ignore[attr-defined]
        return data, np.asarray(image.affine)  # type: ignore[attr-defined]


def _downsample(volume: np.ndarray) -> np.ndarray:
    # Gaussian anti-aliasing (sigma ~ half the new spacing), then keep every other voxel.
    return ndimage.gaussian_filter(volume, sigma=1.0)[::_ATLAS_STEP, ::_ATLAS_STEP,
                                                      ::_ATLAS_STEP].copy()


def _shells(hull: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft CSF / skull / fat fractions ``(X, Y, Z)`` in bands outside a binary hull."""
    distance = ndimage.distance_transform_edt(~hull, sampling=float(_ATLAS_STEP))
    outside = ~hull

    def within(radius: float) -> np.ndarray:
        # Fraction of a voxel inside `radius`: a 1-voxel ramp gives smooth shell edges.
        ramp = np.clip((radius - distance) / _ATLAS_STEP + 0.5, 0.0, 1.0)
        return (ramp * outside).astype(np.float32)

    csf, skull, fat = (within(r) for r in _SHELLS_MM)
    return csf, skull - csf, fat - skull


@functools.lru_cache(maxsize=1)
def load_atlas() -> TissueAtlas:
    """Build the tissue atlas once per process from nilearn's package data (~1 s)."""
    t1, affine = _load_template("t1")
    gm, _ = _load_template("gm")
    wm, _ = _load_template("wm")
    # The template is masked to the brain (CSF spaces included): inside it, whatever is
    # neither grey nor white matter is CSF.
    brain = np.maximum((t1 > 0).astype(np.float32), np.clip(gm + wm, 0.0, 1.0))
    gm, wm, brain = (_downsample(v) for v in (gm, wm, brain))
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    # The hull closes sulci and fills the ventricles: a smooth inner skull surface.
    hull = ndimage.binary_fill_holes(ndimage.gaussian_filter(brain, sigma=2.0) > 0.25)
    csf_shell, skull, fat = _shells(hull)
    csf = csf + np.clip(hull.astype(np.float32) - gm - wm - csf, 0.0, 1.0) + csf_shell
    fractions = np.stack([gm, wm, csf, skull, fat]).astype(np.float32)
    fractions /= np.maximum(fractions.sum(axis=0, keepdims=True), 1.0)
    return TissueAtlas(fractions=fractions, intracranial=hull.astype(np.float32),
                       origin_mm=affine[:3, 3].astype(np.float64),
                       spacing_mm=float(affine[0, 0]) * _ATLAS_STEP)


def grid_affine() -> np.ndarray:
    """The ``(4, 4)`` RAS+ voxel -> world affine of the demo grid (3 mm, centred)."""
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    half = (np.asarray(GRID_SHAPE, dtype=np.float64) - 1.0) / 2.0
    affine[:3, 3] = np.asarray(GRID_CENTRE_MM) - VOXEL_MM * half
    return affine


@functools.lru_cache(maxsize=1)
def grid_points() -> np.ndarray:
    """World coordinates (mm) of every demo-grid voxel, ``(3, 64, 76, 64)`` float64."""
    index = np.indices(GRID_SHAPE, dtype=np.float64)
    affine = grid_affine()
    points = np.einsum("ij,j...->i...", affine[:3, :3], index)
    points += affine[:3, 3].reshape(3, 1, 1, 1)
    points.flags.writeable = False  # cached and shared: guard against in-place edits
    return points


def smooth_field(coefficients: np.ndarray, shape: tuple[int, ...] = GRID_SHAPE) -> np.ndarray:
    """Smooth random fields from low-frequency cosine (DCT-II) coefficients.

    Args:
        coefficients: ``(C, K, K, K)``; entry ``[c, a, b, d]`` weighs the product of
            cosines of frequencies ``a+1``, ``b+1``, ``d+1`` along x, y, z.
        shape: the grid ``(X, Y, Z)``.

    Returns:
        ``(C, X, Y, Z)`` float64. A separable basis makes this three small matrix
        products instead of interpolating a control grid.
    """
    k = coefficients.shape[1]
    bases = []
    for n in shape:
        position = (np.arange(n) + 0.5) / n
        bases.append(np.cos(np.pi * np.arange(1, k + 1)[:, None] * position[None, :]))
    return np.einsum("cabd,ax,by,dz->cxyz", coefficients, *bases, optimize=True)


@dataclass(frozen=True, eq=False)
class Subject:
    """How one subject's head sits in the scanner relative to the template.

    Attributes:
        rotation: ``(3, 3)`` world -> template rotation (a few degrees).
        scale: ``(3,)`` subject size relative to MNI per axis (MNI brains are large).
        shift_mm: ``(3,)`` head position offset in the scanner.
        warp: ``(3, K, K, K)`` cosine coefficients (mm) of the smooth displacement.
    """

    rotation: np.ndarray
    scale: np.ndarray
    shift_mm: np.ndarray
    warp: np.ndarray


def sample_subject(rng: np.random.Generator) -> Subject:
    """Draw a subject: +-4 deg rotations, 0.82-0.92 scale, +-4 mm shift, ~2 mm warp RMS."""
    angles = np.deg2rad(rng.uniform(-4.0, 4.0, size=3))
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        turn = np.eye(3)
        turn[i, i], turn[i, j], turn[j, i], turn[j, j] = c, -s, s, c
        rotation = turn @ rotation
    # Higher frequencies get smaller amplitudes so the warp stays smooth and invertible.
    frequency = np.add.outer(np.add.outer(np.arange(3), np.arange(3)), np.arange(3)) + 1.0
    warp = rng.normal(0.0, 1.0, size=(3, 3, 3, 3)) * (1.6 / frequency)
    # Native brains are smaller than the MNI average; a little per-axis jitter on top.
    scale = rng.uniform(0.84, 0.90) * rng.uniform(0.98, 1.02, size=3)
    return Subject(rotation=rotation, scale=scale,
                   shift_mm=rng.uniform(-4.0, 4.0, size=3), warp=warp)


def subject_to_template(subject: Subject, points_world: np.ndarray) -> np.ndarray:
    """Map world points ``(3, X, Y, Z)`` (mm) to template MNI points ``(3, X, Y, Z)``."""
    centred = (points_world - subject.shift_mm.reshape(3, 1, 1, 1)) / subject.scale.reshape(
        3, 1, 1, 1)
    mni = np.einsum("ij,j...->i...", subject.rotation, centred)
    return mni + smooth_field(subject.warp, points_world.shape[1:])
