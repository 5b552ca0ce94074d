"""Image and text encoders, projection heads, the dual-encoder model."""

from selip.models.heads import LogitScale, Projection
from selip.models.image_encoder import ImageEncoder, ImageEncoderConfig
from selip.models.selip_model import SelipModel
from selip.models.text_encoder import TextEncoder, TextEncoderConfig

__all__ = ["ImageEncoder", "ImageEncoderConfig", "LogitScale", "Projection", "SelipModel",
           "TextEncoder", "TextEncoderConfig"]
