"""The LightningModules: a :class:`BaseTask` and the four tasks built on it.

They only orchestrate: the math lives in pure modules (:mod:`selip.losses`,
:mod:`selip.metrics`, :mod:`selip.dice`), the run machinery in :mod:`selip.training`,
and all they know of the data is :class:`selip.data.description.DataDescription`.
"""

from selip.tasks.base import BaseTask
from selip.tasks.classify import ClassificationTask
from selip.tasks.pretrain import PretrainTask
from selip.tasks.segment import SegmentationTask
from selip.tasks.zeroshot import ZeroShotTask

__all__ = ["BaseTask", "ClassificationTask", "PretrainTask", "SegmentationTask", "ZeroShotTask"]
