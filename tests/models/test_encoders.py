import math

import pytest
import torch

from selip.models import (
    ImageEncoder,
    ImageEncoderConfig,
    LogitScale,
    SelipModel,
    TextEncoder,
    TextEncoderConfig,
)
from tests.tasks.conftest import TINY_TEXT


@pytest.mark.parametrize("depth, features", [(10, 32), (18, 32), (34, 32), (50, 128)])
def test_resnet_depths_and_widths(depth, features):
    encoder = ImageEncoder(ImageEncoderConfig(depth=depth, width=4))
    out = encoder(torch.randn(2, 1, 8, 16, 16))
    assert out.shape == (2, features) == (2, encoder.out_features)


def test_the_anisotropic_stem_keeps_the_slice_axis():
    x = torch.randn(2, 1, 8, 32, 32)
    paper = ImageEncoder(ImageEncoderConfig(depth=10, width=4, anisotropic_stem=True)).eval()
    plain = ImageEncoder(ImageEncoderConfig(depth=10, width=4, anisotropic_stem=False)).eval()
    paper_maps, plain_maps = paper.stages(x), plain.stages(x)
    assert paper_maps[0].shape[2:] == (8, 16, 16)  # stem: D kept, H and W halved
    assert paper_maps[1].shape[2:] == (8, 8, 8)  # max-pool (1, 2, 2)
    assert plain_maps[1].shape[2:] == (2, 8, 8)
    assert [m.shape[1] for m in paper_maps] == paper.stage_channels
    torch.testing.assert_close(paper.resnet.avgpool(paper_maps[-1]).flatten(1), paper(x))


@pytest.mark.parametrize("anisotropic_stem", [True, False])
def test_forward_is_monais_resnet_and_checkpointing_is_off_by_default(anisotropic_stem):
    # forward runs the stem and blocks itself (to checkpoint them): still MONAI's network
    encoder = ImageEncoder(ImageEncoderConfig(depth=50, width=4,
                                              anisotropic_stem=anisotropic_stem))
    assert not encoder.config.gradient_checkpointing
    x = torch.randn(2, 1, 8, 16, 16)
    torch.testing.assert_close(encoder.eval()(x), encoder.resnet(x))
    torch.testing.assert_close(encoder.train()(x), encoder.resnet(x))


def test_bad_image_config_is_named():
    with pytest.raises(ValueError, match="depth"):
        ImageEncoderConfig(depth=12)


def test_tiny_text_encoder_from_config_pools_cls_or_mean():
    ids = torch.randint(0, 1000, (3, 7))
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    cls = TextEncoder(TextEncoderConfig(**TINY_TEXT))
    assert cls.out_features == 32 and cls(ids, mask).shape == (3, 32)
    mean_config = TextEncoderConfig(**{**TINY_TEXT, "pooling": "mean"})
    mean = TextEncoder(mean_config)
    mean.load_state_dict(cls.state_dict())
    mean.eval()
    hidden = mean.model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(mean(ids, mask)[0], hidden[0, :4].mean(0))
    assert cls.model.training  # fine-tuning keeps dropout on


def test_frozen_text_encoder_has_no_trainable_weights():
    frozen = TextEncoder(TextEncoderConfig(**{**TINY_TEXT, "freeze": True}))
    assert not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError, match="pretrained: false"):
        TextEncoderConfig(config_overrides={"hidden_size": 8})
    with pytest.raises(ValueError, match="pooling"):
        TextEncoderConfig(pooling="max")  # type: ignore[arg-type]


def test_the_packaged_minilm_loads_offline():
    encoder = TextEncoder(TextEncoderConfig(pooling="mean"))
    assert encoder.out_features == 384


def test_logit_scale_starts_at_one_over_temperature_and_is_capped():
    scale = LogitScale(temperature=0.07)
    assert math.isclose(float(scale()), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    value = scale()
    assert math.isclose(float(value), 100.0, rel_tol=1e-5)
    value.backward()
    assert scale.log_scale.grad is not None and float(scale.log_scale.grad) == 0.0
    assert not LogitScale(learnable=False).log_scale.requires_grad


def test_dual_encoder_embeddings_are_unit_vectors_and_sequence_embedding_starts_neutral():
    model = SelipModel(ImageEncoderConfig(depth=10, width=4), TextEncoderConfig(**TINY_TEXT),
                       embed_dim=8, num_sequences=3, sequence_embedding=True)
    image = torch.randn(2, 1, 8, 16, 16)
    sequence = torch.tensor([0, 2])
    model.eval()
    with_seq = model.encode_image(image, sequence)
    torch.testing.assert_close(with_seq.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(with_seq, model.encode_image(image))  # zero-initialised
    text = model.encode_text(torch.randint(0, 100, (2, 5)), torch.ones(2, 5, dtype=torch.long))
    assert text.shape == (2, 8)
    with pytest.raises(ValueError, match="num_sequences"):
        SelipModel(ImageEncoderConfig(depth=10, width=4), TextEncoderConfig(**TINY_TEXT),
                   sequence_embedding=True)


def test_an_inflated_stem_reproduces_the_one_channel_features_on_equal_channels():
    from selip.models.image_encoder import match_input_channels

    torch.manual_seed(0)
    encoder = ImageEncoder(ImageEncoderConfig(depth=10, width=4)).eval()
    volume = torch.rand(2, 1, 8, 16, 16)
    before = encoder(volume)
    encoder.resnet.conv1.requires_grad_(False)
    match_input_channels(encoder, 3)
    assert encoder.config.in_channels == 3
    assert not encoder.resnet.conv1.weight.requires_grad  # a frozen stem stays frozen
    torch.testing.assert_close(encoder(volume.repeat(1, 3, 1, 1, 1)), before)
    match_input_channels(encoder, 3)  # already right: nothing changes
    with pytest.raises(ValueError, match="takes 3 input channels but the data gives 2"):
        match_input_channels(encoder, 2)


def test_the_unused_bert_pooler_is_dropped_and_old_checkpoints_still_load():
    from selip.models import TextEncoder, TextEncoderConfig

    encoder = TextEncoder(TextEncoderConfig(**TINY_TEXT))
    assert encoder.model.pooler is None  # DDP rejects parameters that get no gradient
    state = encoder.state_dict()
    state["model.pooler.dense.weight"] = torch.zeros(32, 32)  # as written before the change
    state["model.pooler.dense.bias"] = torch.zeros(32)
    TextEncoder(TextEncoderConfig(**TINY_TEXT)).load_state_dict(state)  # strict
