"""The sequence names selip knows without configuration."""

from __future__ import annotations

#: Sequence columns recognised without configuration (lower case).
KNOWN_SEQUENCES = ("t1", "t1ce", "t1c", "t2", "flair", "dwi", "adc", "swi", "pd", "t2star",
                   "gre", "dti", "pwi", "mra")
