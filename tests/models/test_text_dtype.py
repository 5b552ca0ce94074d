"""A text model stored in fp16 still trains (and embeds) in float32.

The installed transformers loads with ``dtype="auto"``: an fp16 copy of the MiniLM would
come back in fp16, and under ``16-mixed`` the first optimiser step would fail with
"Attempting to unscale FP16 gradients" (under ``bf16-mixed`` AdamW would update bf16
weights and lose small updates).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selip.models import TextEncoder, TextEncoderConfig
from selip.similarity import embedding
from selip.text.tokenizer import default_text_model, load_tokenizer


@pytest.fixture(scope="module")
def fp16_minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An fp16 copy of the packaged MiniLM: half-precision weights, config and tokenizer."""
    from transformers import AutoModel

    folder = tmp_path_factory.mktemp("minilm_fp16")
    source = default_text_model()
    AutoModel.from_pretrained(source, local_files_only=True).half().save_pretrained(folder)
    load_tokenizer(source).save_pretrained(folder)
    return folder


def test_the_copy_is_stored_in_fp16(fp16_minilm):
    # Guards the premise: the loader's default would give fp16 parameters.
    from transformers import AutoModel

    stored = AutoModel.from_pretrained(fp16_minilm, local_files_only=True)
    assert {p.dtype for p in stored.parameters()} == {torch.float16}


@pytest.mark.parametrize("pretrained", [True, False])
def test_the_text_encoder_loads_in_float32(fp16_minilm, pretrained):
    encoder = TextEncoder(TextEncoderConfig(model=str(fp16_minilm), pretrained=pretrained))
    assert {p.dtype for p in encoder.parameters()} == {torch.float32}


def test_a_grad_scaler_step_over_an_fp16_stored_model(fp16_minilm):
    # The 16-mixed step: autocast forward, scaled backward, unscale and step. GradScaler
    # refuses fp16 gradients on any device, so the CPU reproduces the GPU failure.
    encoder = TextEncoder(TextEncoderConfig(model=str(fp16_minilm)))
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cpu")
    tokens = load_tokenizer(str(fp16_minilm))(["a small left frontal lesion", "normal"],
                                              padding=True, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.float16):
        features = encoder(tokens["input_ids"], tokens["attention_mask"])
    scaler.scale(features.float().pow(2).mean()).backward()
    scaler.step(optimizer)  # raised "Attempting to unscale FP16 gradients." before the fix
    scaler.update()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in encoder.parameters())


def test_the_similarity_embedding_model_loads_in_float32(fp16_minilm):
    model = embedding.load_text_model(str(fp16_minilm))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    vectors = embedding.embed_texts(["a small left frontal lesion"], str(fp16_minilm),
                                    device="cpu")
    assert vectors.dtype == "float32" and abs(float((vectors**2).sum()) - 1.0) < 1e-5
