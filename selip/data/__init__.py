"""The data path: manifest, validation, preprocessing cache, pairs, datamodule.

Names are imported on first use, so light commands (``selip demo-data``) do not pay for
importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AugmentSettings": "selip.data.augment",
    "SelipData": "selip.data.selip_data",
    "SelipDataModule": "selip.data.datamodule",
    "ManifestError": "selip.data.manifest",
    "Problem": "selip.data.manifest",
    "read_manifest": "selip.data.manifest",
    "PreprocessSettings": "selip.data.preprocess",
    "preprocess_mask": "selip.data.preprocess",
    "preprocess_volume": "selip.data.preprocess",
    "Finding": "selip.text.reports",
    "parse_report": "selip.text.reports",
    "render_report": "selip.text.reports",
    "swap_laterality": "selip.text.reports",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'selip.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
