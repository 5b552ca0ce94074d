"""selip: similarity-enhanced contrastive language-image pretraining on 3D head MRI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from selip.inference import PretrainedSelip

from selip._version import __version__ as __version__


def load(path: str | Path, device: str | torch.device | None = None) -> PretrainedSelip:
    """A trained SeLIP model, ready to embed: :func:`selip.inference.load` (imported on
    first use, so ``import selip`` stays light and never imports Lightning)."""
    from selip.inference import load as load_model

    return load_model(path, device)
