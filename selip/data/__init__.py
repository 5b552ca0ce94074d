"""The data path: manifest, validation, preprocessing cache, pairs, datamodule."""

from selip.data.augment import AugmentSettings
from selip.data.datamodule import SelipDataModule
from selip.data.manifest import ManifestError, Problem, read_manifest
from selip.data.preprocess import PreprocessSettings, preprocess_mask, preprocess_volume
from selip.data.reports import Finding, parse_report, render_report, swap_laterality

__all__ = [
    "AugmentSettings",
    "Finding",
    "ManifestError",
    "PreprocessSettings",
    "Problem",
    "SelipDataModule",
    "parse_report",
    "preprocess_mask",
    "preprocess_volume",
    "read_manifest",
    "render_report",
    "swap_laterality",
]
