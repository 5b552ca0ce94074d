"""Per-sequence tissue intensities and the acquisition model of the demo cohort.

An image is the tissue fractions weighted by each tissue's value on that sequence
(partial-volume mixing), lesions painted over it, then what a scanner adds: a global gain,
a smooth multiplicative bias field and Rician noise, stored as int16.

Contrasts follow clinical appearance: T1 WM > GM > CSF; T2 CSF > GM > WM; FLAIR CSF
suppressed, GM >= WM; DWI (b=1000) fairly uniform in tissue, CSF dark; ADC (in
1e-6 mm^2/s, as scanners store it) CSF bright (~3000), brain tissue at 700-850. Skull is dark on
every sequence, scalp fat bright on T1 and suppressed on the fat-saturated DWI.
"""

from __future__ import annotations

import numpy as np

from selip.demo.anatomy import TISSUES, smooth_field
from selip.demo.lesions import Signature

#: Sequence columns of the manifest and their report headers.
SEQUENCES = ("t1", "t2", "flair", "dwi", "adc")
SEQUENCE_NAMES = {"t1": "T1", "t2": "T2", "flair": "FLAIR", "dwi": "DWI", "adc": "ADC"}

#: ``(5 tissues, 5 sequences)``: value of a pure voxel of each tissue (rows follow
#: :data:`~selip.demo.anatomy.TISSUES`, columns :data:`SEQUENCES`).
TISSUE_VALUES = np.array([
    #  t1      t2     flair   dwi     adc
    [620.0, 880.0, 820.0, 720.0, 830.0],     # grey matter
    [820.0, 640.0, 640.0, 640.0, 720.0],     # white matter
    [180.0, 1450.0, 110.0, 130.0, 3000.0],   # CSF
    [60.0, 60.0, 50.0, 30.0, 150.0],         # skull
    [1050.0, 780.0, 520.0, 70.0, 250.0],     # scalp fat
], dtype=np.float32)
assert TISSUE_VALUES.shape == (len(TISSUES), len(SEQUENCES))

_INT16_MAX = 32767


def tissue_images(fractions: np.ndarray) -> np.ndarray:
    """Noise-free images from tissue fractions ``(5, X, Y, Z)`` -> ``(5 seq, X, Y, Z)``."""
    return np.tensordot(TISSUE_VALUES.T, fractions, axes=1).astype(np.float32)


def paint(images: np.ndarray, weight: np.ndarray, signature: Signature,
          texture: np.ndarray | None = None) -> None:
    """Blend a signature into ``images`` ``(5, X, Y, Z)`` in place.

    Args:
        images: per-sequence images, in :data:`SEQUENCES` order.
        weight: ``(X, Y, Z)`` occupancy in [0, 1] (partial volume at the edge).
        signature: values (and texture amplitudes) per sequence.
        texture: ``(X, Y, Z)`` zero-mean smooth field of unit spread, scaled by the
            signature's texture amplitude; ``None`` paints homogeneous values.
    """
    inside = weight > 0
    w = weight[inside]
    for channel, sequence in enumerate(SEQUENCES):
        value = np.full(w.shape, signature.value[sequence], dtype=np.float32)
        if texture is not None and signature.texture[sequence]:
            value += signature.texture[sequence] * texture[inside]
        plane = images[channel]
        plane[inside] = (1.0 - w) * plane[inside] + w * value


def random_texture(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Zero-mean smooth texture ``(X, Y, Z)`` clipped to [-1, 1] (features ~1 cm)."""
    field = smooth_field(rng.normal(size=(1, 12, 12, 12)), shape)[0]
    return np.clip(field / (field.std() + 1e-8), -1.0, 1.0).astype(np.float32)


def acquire(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the scanner adds: gain, bias field, Rician noise; ``(5, X, Y, Z)`` -> int16.

    Each sequence gets its own gain (0.85-1.15), a smooth bias field (about +-15 %) and
    Rician noise (sigma 1-2.5 % of white matter), the magnitude of complex Gaussian noise,
    which is how MR magnitude images are noisy: positive even in the air.
    """
    shape = images.shape[1:]
    count = len(SEQUENCES)
    gain = rng.uniform(0.85, 1.15, size=count).astype(np.float32)
    bias = np.exp(smooth_field(rng.normal(0.0, 0.06, size=(count, 2, 2, 2)), shape))
    sigma = (rng.uniform(0.01, 0.025, size=count) * TISSUE_VALUES[1]).astype(np.float32)
    out = np.empty(images.shape, dtype=np.int16)
    for c in range(count):
        signal = images[c] * gain[c] * bias[c].astype(np.float32)
        real = signal + sigma[c] * rng.standard_normal(shape, dtype=np.float32)
        imaginary = sigma[c] * rng.standard_normal(shape, dtype=np.float32)
        magnitude = np.sqrt(real * real + imaginary * imaginary)
        out[c] = np.clip(np.rint(magnitude), 0, _INT16_MAX).astype(np.int16)
    return out
