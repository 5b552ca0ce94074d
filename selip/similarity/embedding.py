"""Sentence embeddings of finding texts for the ``embedding`` semantic scorer.

Any Hugging Face encoder from a local folder (default: the packaged MiniLM), mean
pooling over tokens, L2-normalised; batched, on the GPU when there is one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from selip.text.tokenizer import load_tokenizer, resolve_text_model


def model_identity(text_model: str | None) -> str:
    """What identifies the model in a cache key: its path/name and its config file's hash."""
    from pathlib import Path

    from selip.io.fingerprint import sha256_file

    name = resolve_text_model(text_model)
    config = Path(name) / "config.json"
    weights = [p for p in Path(name).glob("*.safetensors")] + list(Path(name).glob("*.bin"))
    parts = [name] + ([sha256_file(config)] if config.is_file() else [])
    parts += [f"{p.name}:{p.stat().st_size}" for p in sorted(weights)]
    return "|".join(parts)


def load_text_model(name: str) -> Any:
    """The encoder in float32 whatever its stored dtype (transformers' default is "auto").

    fp16 on the CPU is slow or unsupported for some kernels, and the scores (and their
    cache) should not depend on the device or on how the weights were saved; a MiniLM
    over finding texts costs little in float32 on a GPU too.
    """
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(name, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load text model {name!r} from local files ({err})") from None


@torch.no_grad()
def embed_texts(texts: list[str], text_model: str | None = None, batch_size: int = 256,
                device: str | None = None, progress: bool = False) -> np.ndarray:
    """Embed ``texts``; returns (N, E) float32 with unit-norm rows."""
    name = resolve_text_model(text_model)
    tokenizer = load_tokenizer(name)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_text_model(name).to(target).eval()
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="embedding findings",
                      disable=not progress, leave=False):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                          max_length=128, return_tensors="pt").to(target)
        hidden = model(**batch).last_hidden_state  # (n, L, E)
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
    if not chunks:
        return np.zeros((0, 1), np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)
