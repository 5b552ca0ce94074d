"""selip: similarity-enhanced contrastive language-image pretraining on 3D head MRI."""

__version__ = "0.1.0"
