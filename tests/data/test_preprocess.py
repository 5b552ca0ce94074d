"""Preprocessing on real files: orientation, spacing, shape, intensities."""

import nibabel as nib
import numpy as np
import pytest

from selip.data.nifti import VolumeError
from selip.data.preprocess import PreprocessSettings, preprocess_mask, preprocess_volume
from tests.conftest import ANATOMICAL, head_volume, write_nifti


def test_real_big_endian_scan():
    assert nib.load(ANATOMICAL).get_data_dtype().byteorder == ">"  # the file is big-endian
    settings = PreprocessSettings(spacing=(2.0, 2.0, 2.0), shape=(32, 48, 40))
    out = preprocess_volume(ANATOMICAL, settings)
    assert out.shape == (32, 48, 40) and out.dtype == np.float16
    assert out.min() == 0.0 and 1.0 < out.max() <= 8.0  # the median scale: no white point
    head = out[out > out.mean()].astype(np.float32)
    assert 0.4 < float(np.median(head)) < 0.6  # the head's median lands near 0.5
    assert out.mean() > 0.05  # real anatomy, not an empty canvas
    paper = preprocess_volume(ANATOMICAL, PreprocessSettings((2.0, 2.0, 2.0), (32, 48, 40),
                                                             intensity="percentile"))
    assert paper.min() == 0.0 and paper.max() == 1.0


def test_resampling_changes_the_grid_as_asked():
    # anatomical.nii is 33x41x25 at 2 mm (x, y, z): at 4 mm the head fits in half the voxels
    coarse = preprocess_volume(ANATOMICAL, PreprocessSettings((4.0, 4.0, 4.0), (16, 24, 24)))
    nonzero = np.argwhere(coarse > 0.05)
    extent = nonzero.max(0) - nonzero.min(0) + 1
    assert tuple(extent) <= (13, 11, 17) and tuple(extent) >= (5, 6, 9)


def test_orientation_is_canonicalised(tmp_path):
    data = head_volume((12, 14, 10))
    ras = write_nifti(tmp_path / "ras.nii.gz", data)
    # the same world-space image stored with the x axis reversed (LAS)
    las_affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    las_affine[0, 3] = 2.0 * 11
    las = write_nifti(tmp_path / "las.nii.gz", data[::-1].copy(), affine=las_affine)
    settings = PreprocessSettings((2.0, 2.0, 2.0), (10, 14, 12))
    a, b = preprocess_volume(ras, settings), preprocess_volume(las, settings)
    np.testing.assert_array_equal(a, b)
    # W is left→right: the bright blob written at low x (left) lands at low W
    column = a.astype(np.float32).mean(axis=(0, 1))
    assert column[:4].mean() > column[-4:].mean()


@pytest.mark.parametrize("intensity, top", [("percentile", 1.0), ("median", 8.0)])
def test_a_hot_voxel_does_not_squash_the_contrast(tmp_path, intensity, top):
    data = head_volume()
    data[5, 5, 5] = 1e6
    path = write_nifti(tmp_path / "hot.nii.gz", data)
    out = preprocess_volume(path, PreprocessSettings((2.0, 2.0, 2.0), (10, 14, 12),
                                                     intensity=intensity))
    inside = out[out > 0.05].astype(np.float32)
    assert inside.mean() > 0.2
    assert out.max() == top and out.min() == 0.0  # bounded: 1.0, or 8 median halves


def test_4d_first_volume_and_constant_volume(tmp_path):
    stack = np.stack([head_volume(), np.zeros((12, 14, 10), np.float32)], axis=-1)
    path = write_nifti(tmp_path / "four.nii.gz", stack)
    settings = PreprocessSettings((2.0, 2.0, 2.0), (10, 14, 12))
    with pytest.raises(VolumeError, match="4D volume"):
        preprocess_volume(path, settings)
    first = preprocess_volume(path, PreprocessSettings((2.0, 2.0, 2.0), (10, 14, 12), (0.1, 99.9),
                                                       first_volume_of_4d=True))
    single = preprocess_volume(write_nifti(tmp_path / "one.nii.gz", head_volume()), settings)
    np.testing.assert_array_equal(first, single)
    flat = write_nifti(tmp_path / "flat.nii.gz", np.full((12, 14, 10), 7.0, np.float32))
    for intensity in ("median", "percentile"):  # no contrast: refused, naming the file
        with pytest.raises(VolumeError, match=r"constant volume \(every voxel is 7\).*flat"):
            preprocess_volume(flat, PreprocessSettings((2.0, 2.0, 2.0), (10, 14, 12),
                                                       intensity=intensity))


def test_mask_uses_nearest_neighbour_and_keeps_labels(tmp_path):
    mask = np.zeros((12, 14, 10), np.uint8)
    mask[3:7, 4:9, 2:6] = 2
    path = write_nifti(tmp_path / "mask.nii.gz", mask)
    out = preprocess_mask(path, PreprocessSettings((1.0, 1.0, 1.0), (20, 28, 24)))
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 2}
    bad = write_nifti(tmp_path / "badmask.nii.gz", mask.astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match="integer labels"):
        preprocess_mask(bad, PreprocessSettings())


@pytest.mark.parametrize("kwargs, message", [
    ({"spacing": (0.0, 1.0, 1.0)}, "spacing"),
    ({"shape": (64, 64)}, "shape"),
    ({"percentiles": (50.0, 10.0)}, "percentiles"),
    ({"intensity": "zscore"}, "intensity must be one of median, percentile"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreprocessSettings(**kwargs)


def test_preprocessing_leaves_the_training_random_stream_alone(tmp_path):
    """torchio draws from torch's generator in every transform; a cache miss must not
    shift the augmentation drawn after it (warm and cold caches augment alike)."""
    import torch

    volume = write_nifti(tmp_path / "v.nii.gz", head_volume())
    mask = write_nifti(tmp_path / "m.nii.gz", (head_volume() > 0.5).astype(np.uint8))
    settings = PreprocessSettings(spacing=(3.0, 3.0, 3.0), shape=(8, 8, 8))
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    preprocess_volume(volume, settings)
    preprocess_mask(mask, settings)
    assert torch.equal(torch.rand(4), expected)
