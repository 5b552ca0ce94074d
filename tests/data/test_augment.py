import pytest
import torch

from selip.data.augment import AugmentSettings, augment_pair


def _volume() -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros(1, 8, 12, 10)
    image[:, 2:6, 3:9, 1:4] = 0.8  # an off-centre block, left side (low W)
    return image, (image > 0).long()


def test_disabled_is_the_identity():
    image, mask = _volume()
    out, out_mask, flipped = augment_pair(image, mask, AugmentSettings(enabled=False), (2, 2, 2))
    assert out is image and out_mask is mask and not flipped


def test_flip_mirrors_the_left_right_axis_of_image_and_mask():
    image, mask = _volume()
    only_flip = AugmentSettings(flip_probability=1.0, affine_probability=0.0,
                                gamma_probability=0.0, intensity_scale=0.0)
    out, out_mask, flipped = augment_pair(image, mask, only_flip, (2, 2, 2))
    assert flipped
    torch.testing.assert_close(out, image.flip(-1))
    assert torch.equal(out_mask, mask.flip(-1))


def test_affine_keeps_shape_and_mask_labels_follow_the_image():
    torch.manual_seed(0)
    image, mask = _volume()
    strong = AugmentSettings(flip_probability=0.0, affine_probability=1.0, degrees=10.0,
                             scales=0.1, translation_mm=2.0)
    out, out_mask, _ = augment_pair(image, mask, strong, (2, 2, 2))
    assert out.shape == image.shape and out_mask is not None and out_mask.shape == mask.shape
    assert set(out_mask.unique().tolist()) <= {0, 1}
    assert not torch.equal(out_mask, mask)  # it moved
    # the bright block and the mask still overlap almost everywhere
    inside = out[out_mask.bool()]
    assert inside.numel() > 0 and inside.mean() > 0.5


def test_seeded_randomness_is_reproducible():
    image, mask = _volume()
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        results.append(augment_pair(image, mask, AugmentSettings(), (2, 2, 2)))
    torch.testing.assert_close(results[0][0], results[1][0])
    assert results[0][2] == results[1][2]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="flip_probability"):
        AugmentSettings(flip_probability=1.5)
    with pytest.raises(ValueError, match="degrees"):
        AugmentSettings(degrees=-1)
