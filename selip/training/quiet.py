"""Third-party lines a selip run does not print: each one named, silenced at its source.

A run prints selip's own lines, progress bars, and the warnings a user should act on. These
are none of those:

- torch's ``LeafSpec`` deprecation, raised inside Lightning's own code (nothing a user can
  change);
- Lightning's hint that ``srun`` is installed but unused, on any machine with SLURM's tools
  (selip's SLURM scripts start every rank through ``srun``; an interactive run means to
  run locally);
- Lightning's advertisement for its cloud logger.

Each filter matches one message, so every other warning still shows.
``tests/test_quiet.py`` runs the demo's commands and fails on any warning not expected.
"""

from __future__ import annotations

import logging
import warnings

#: Message patterns (regular expressions, matched at the start) of silenced warnings.
SILENCED_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The `srun` command is available on your system but is not used",
)
#: Lightning's logger of rank-zero information, and what is dropped from it.
_LIGHTNING_INFO = "lightning.pytorch.utilities.rank_zero"
_ADVERTISEMENT = "litlogger"


class _DropAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _ADVERTISEMENT not in str(record.msg)


def quiet_third_party() -> None:
    """Install the filters (idempotent: a second call adds nothing)."""
    for pattern in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logger = logging.getLogger(_LIGHTNING_INFO)
    if not any(isinstance(f, _DropAdvertisement) for f in logger.filters):
        logger.addFilter(_DropAdvertisement())
