"""selip: similarity-enhanced contrastive language-image pretraining on 3D head MRI."""

__version__ = "0.1.0"


def load(path: str, device: str | None = None):  # type: ignore[no-untyped-def]
    """A trained SeLIP model, ready to embed: :func:`selip.inference.load` (imported on
    first use, so ``import selip`` stays light and never imports Lightning)."""
    from selip.inference import load as load_model

    return load_model(path, device)
