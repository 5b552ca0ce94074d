"""``selip import dicom|bids``: the command line of the importers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from selip.importer.outcome import DEFAULT_EXPECTED, ImportSummary

_DESCRIPTION = {
    "dicom": "Import a DICOM tree (a PACS export, any folder layout) and a report file "
             "(CSV, JSON or JSONL keyed by AccessionNumber or StudyInstanceUID): classify "
             "every series by its headers, convert the chosen ones with dcm2niix, join the "
             "reports, write manifest.csv and import_log.jsonl. No patient identifier is "
             "written: exam ids are keyed hashes (the key stays in OUT/import_key).",
    "bids": "Import a BIDS dataset (sub-*/[ses-*/]anat|dwi) and a report file keyed by "
            "participant_id (and session_id when the dataset has sessions): map T1w (t1c "
            "with a ce- entity), T2w, FLAIR, dwi (its highest b), ADC, T2starw and PDw to "
            "sequences, link or write one volume per sequence, join the reports, write "
            "manifest.csv and import_log.jsonl. Subject and session labels are never "
            "written: exam ids are keyed hashes (the key stays in OUT/import_key).",
}


def _parser(kind: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"selip import {kind}", description=_DESCRIPTION[kind])
    parser.add_argument("source", type=Path,
                        help="the DICOM folder" if kind == "dicom" else "the BIDS root")
    parser.add_argument("--reports", type=Path, required=True,
                        help="the report file (.csv, .tsv, .json, .jsonl)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the cohort folder to write (manifest.csv goes there)")
    parser.add_argument("--reports-encoding", default=None,
                        help="the report file's encoding (default: UTF-8, UTF-8 with BOM or "
                             "GB18030, detected)")
    parser.add_argument("--report-key", default=None,
                        help="the report file's key field (default: detected, e.g. "
                             "AccessionNumber, StudyInstanceUID"
                             + (", participant_id" if kind == "bids" else "") + ")")
    parser.add_argument("--report-text", default=None,
                        help="the report file's text field (default: detected, e.g. report, "
                             "findings, 检查所见)")
    if kind == "bids":
        parser.add_argument("--report-session", default=None,
                            help="the report file's session field (default: detected, e.g. "
                                 "session_id, when the dataset has sessions)")
    if kind == "dicom":
        parser.add_argument("--rules", type=Path, default=None,
                            help="your sequence rules (YAML; 'extends: default' keeps the "
                                 "shipped ones after yours)")
        parser.add_argument("--dcm2niix", default=None,
                            help="the dcm2niix binary (default: the dcm2niix wheel's)")
    parser.add_argument("--sequences", default=",".join(DEFAULT_EXPECTED),
                        help="the sequences an exam should have, for the 'missing' column "
                             f"of the log (default {','.join(DEFAULT_EXPECTED)})")
    parser.add_argument("--shard", default=None,
                        help="I/N: do the I-th of N parts (0-based; default: the SLURM "
                             "array task, else everything)")
    parser.add_argument("--workers", type=int, default=2,
                        help="conversions at once (default 2)")
    parser.add_argument("--key", type=Path, default=None,
                        help="the exam-id key file (default OUT/import_key, created once)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _fail(message: str) -> int:
    print(f"selip: {message}", file=sys.stderr)
    return 2


def _print_summary(summary: ImportSummary | None, kind: str) -> None:
    if summary is None:
        print(f"selip import {kind}: this part is written; the manifest is merged by the "
              f"last shard to finish")
        return
    print(f"selip import {kind}:")
    for line in summary.lines():
        print(f"  {line}")


def run_import(argv: Sequence[str]) -> int:
    """``selip import dicom|bids ...``."""
    args = list(argv)
    if args[:1] in (["-h"], ["--help"]):
        print("usage: selip import {dicom,bids} SOURCE --reports FILE --out DIR\n\n"
              f"  dicom  {_DESCRIPTION['dicom']}\n  bids   {_DESCRIPTION['bids']}\n\n"
              "Run 'selip import dicom --help' or 'selip import bids --help' for the options.")
        return 0
    if not args or args[0] not in _DESCRIPTION:
        return _fail("usage: selip import {dicom,bids} SOURCE --reports FILE --out DIR "
                     "(selip import dicom --help for every option)")
    kind = args.pop(0)
    parsed = _parser(kind).parse_args(args)
    from selip.importer.convert import ConversionError
    from selip.importer.options import ImportOptions
    from selip.importer.shard import parse_shard

    try:
        options = ImportOptions(
            out=parsed.out, reports=parsed.reports, reports_encoding=parsed.reports_encoding,
            report_key=parsed.report_key, report_text=parsed.report_text,
            report_session=getattr(parsed, "report_session", None),
            rules=getattr(parsed, "rules", None),
            expected=[s.strip().lower() for s in parsed.sequences.split(",") if s.strip()],
            shard=parse_shard(parsed.shard), workers=parsed.workers,
            dcm2niix=getattr(parsed, "dcm2niix", None), key_file=parsed.key,
            progress=not parsed.quiet)
        if kind == "dicom":
            from selip.importer.dicom_import import import_dicom

            summary = import_dicom(parsed.source, options)
        else:
            from selip.importer.bids_import import import_bids

            summary = import_bids(parsed.source, options)
    except (ValueError, OSError, ConversionError) as err:
        return _fail(str(err))
    _print_summary(summary, kind)
    return 0
