"""The dual encoder: image tower, text tower, projections and the logit scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selip.models.heads import LogitScale, Projection
from selip.models.image_encoder import ImageEncoder, ImageEncoderConfig
from selip.models.text_encoder import TextEncoder, TextEncoderConfig


@dataclass(frozen=True)
class DualEncoderDefaults:
    """The dual encoder's settings when nothing sets them: pretraining's defaults, and what
    a checkpoint that does not record a setting was trained with (one source for both)."""

    embed_dim: int = 512
    temperature: float = 0.07
    max_logit_scale: float = 100.0
    learn_logit_scale: bool = True
    sequence_embedding: bool = False
    max_sequences: int = 16


DUAL_ENCODER = DualEncoderDefaults()


class SelipModel(nn.Module):
    """Maps volumes and report tokens to unit vectors in one embedding space.

    Args:
        image: the 3D ResNet.
        text: the Hugging Face text encoder.
        embed_dim: shared embedding size (512 in the paper).
        temperature: initial temperature (logit scale 1/temperature).
        max_logit_scale: cap on the logit scale.
        learn_logit_scale: learn the scale (the paper's code left it fixed by mistake).
        num_sequences: with ``sequence_embedding``, the number of sequences.
        sequence_embedding: add a learned per-sequence vector to the image features
            before projection (off by default: one encoder serves all sequences).
    """

    def __init__(self, image: ImageEncoderConfig, text: TextEncoderConfig,
                 embed_dim: int = DUAL_ENCODER.embed_dim,
                 temperature: float = DUAL_ENCODER.temperature,
                 max_logit_scale: float = DUAL_ENCODER.max_logit_scale,
                 learn_logit_scale: bool = DUAL_ENCODER.learn_logit_scale,
                 num_sequences: int = 0,
                 sequence_embedding: bool = DUAL_ENCODER.sequence_embedding) -> None:
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        self.image_encoder = ImageEncoder(image)
        self.text_encoder = TextEncoder(text)
        self.image_projection = Projection(self.image_encoder.out_features, embed_dim)
        self.text_projection = Projection(self.text_encoder.out_features, embed_dim)
        self.logit_scale = LogitScale(temperature, max_logit_scale, learn_logit_scale)
        self.sequence_embedding: nn.Embedding | None = None
        if sequence_embedding:
            if num_sequences < 1:
                raise ValueError("sequence_embedding needs num_sequences >= 1")
            self.sequence_embedding = nn.Embedding(num_sequences, self.image_encoder.out_features)
            nn.init.zeros_(self.sequence_embedding.weight)  # start as the shared encoder

    def encode_image(self, image: torch.Tensor, sequence: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """(B, C, D, H, W) → (B, E) unit vectors."""
        features = self.image_encoder(image)
        if self.sequence_embedding is not None and sequence is not None:
            features = features + self.sequence_embedding(sequence)
        return self.image_projection(features)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens → (B, E) unit vectors."""
        return self.text_projection(self.text_encoder(input_ids, attention_mask))
