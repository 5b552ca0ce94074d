"""LightningModules (the only place besides the datamodule and the CLI that uses Lightning)."""

from selip.tasks.classify import ClassificationTask
from selip.tasks.pretrain import PretrainTask
from selip.tasks.segment import SegmentationTask
from selip.tasks.zeroshot import ZeroShotTask

__all__ = ["ClassificationTask", "PretrainTask", "SegmentationTask", "ZeroShotTask"]
