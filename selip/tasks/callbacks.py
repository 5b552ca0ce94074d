"""Deprecated location, kept so that older configs still load: the data-wait callback is
:class:`selip.training.callbacks.DataWaitMonitor` (it was named ``ThroughputMonitor``,
which is also the name of a different Lightning callback)."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_warn

from selip.training.callbacks import DataWaitMonitor


class ThroughputMonitor(DataWaitMonitor):
    """``DataWaitMonitor`` under its old name; warns once per run that it was renamed."""

    def __init__(self, warn_data_fraction: float | None = 0.2, warn_window: int = 50) -> None:
        rank_zero_warn("selip.tasks.callbacks.ThroughputMonitor is now "
                       "selip.training.callbacks.DataWaitMonitor; update the config's "
                       "class_path (the old name will be removed)", category=FutureWarning)
        super().__init__(warn_data_fraction, warn_window)
