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


def test_batched_augmentation_with_nothing_drawn_is_the_identity():
    from selip.data.augment import augment_batch

    images = torch.rand(3, 2, 8, 12, 10)
    masks = (images[:, :1] > 0.5).long()
    off = AugmentSettings(affine_probability=0.0, gamma_probability=0.0, intensity_scale=0.0)
    out, out_masks = augment_batch(images, masks, off, (2.0, 1.0, 1.0))
    torch.testing.assert_close(out, images)
    assert out_masks is not None and torch.equal(out_masks, masks)


def test_rotations_stay_rotations_in_mm_with_anisotropic_voxels():
    from selip.data.augment import random_affine_theta

    shape, spacing = (8, 32, 24), (5.0, 1.0, 1.5)
    rotate = AugmentSettings(degrees=20.0, scales=0.0, translation_mm=0.0)
    theta = random_affine_theta(16, shape, spacing, rotate, torch.device("cpu"))
    half = torch.tensor([shape[2] * spacing[2], shape[1] * spacing[1], shape[0] * spacing[0]]) / 2
    in_mm = theta[:, :, :3] * half[None, :, None] / half[None, None, :]  # E A_n E⁻¹
    eye = torch.eye(3).expand(16, 3, 3)
    torch.testing.assert_close(in_mm @ in_mm.transpose(1, 2), eye, atol=1e-5, rtol=0)
    assert torch.all(theta[:, :, 3] == 0)


def test_batched_affine_moves_image_and_mask_together_and_keeps_labels():
    from selip.data.augment import augment_batch

    torch.manual_seed(1)
    image, mask = _volume()
    images, masks = image[None].repeat(4, 1, 1, 1, 1), mask[None].repeat(4, 1, 1, 1, 1) * 2
    strong = AugmentSettings(affine_probability=1.0, degrees=10.0, scales=0.1,
                             translation_mm=2.0, gamma_probability=0.0, intensity_scale=0.0)
    out, out_masks = augment_batch(images, masks, strong, (2.0, 2.0, 2.0))
    assert out.shape == images.shape and out_masks is not None
    assert out_masks.dtype == masks.dtype and set(out_masks.unique().tolist()) <= {0, 2}
    assert not torch.equal(out_masks[0], out_masks[1])  # each sample drew its own transform
    for sample, labels in zip(out, out_masks, strict=True):
        inside = sample[labels.bool()]
        assert inside.numel() > 0 and inside.mean() > 0.5


def test_a_generator_makes_the_batched_draws_repeat_and_leaves_the_global_one_alone():
    from selip.data.augment import augment_batch, step_generator

    images = torch.rand(3, 1, 8, 12, 10)
    always = AugmentSettings(affine_probability=1.0, gamma_probability=1.0)
    state = torch.get_rng_state()
    out, _ = augment_batch(images, None, always, (2, 2, 2), step_generator((0, 1, 2, 3)))
    assert torch.equal(torch.get_rng_state(), state)
    again, _ = augment_batch(images, None, always, (2, 2, 2), step_generator((0, 1, 2, 3)))
    other, _ = augment_batch(images, None, always, (2, 2, 2), step_generator((0, 2, 2, 3)))
    assert torch.equal(out, again) and not torch.equal(out, other)
    flips = [augment_pair(images[0], None, AugmentSettings(), (2, 2, 2),
                          step_generator((seed,)))[2] for seed in range(32)]
    assert 0 < sum(flips) < 32  # the flip draws from the generator too
