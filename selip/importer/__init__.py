"""From a hospital archive to a selip cohort: ``selip import dicom`` and ``selip import bids``.

Headers are read, never pixels, to classify series (:mod:`.rules`, a YAML file a site can
extend); dcm2niix converts the chosen series; reports are joined by accession number or
study UID (or, for BIDS, by participant and session); the output is a ``manifest.csv``
that ``selip prepare`` and ``selip fit`` read, and an import log with one line per study.
No patient identifier reaches any written file (:mod:`.identity`).
"""
