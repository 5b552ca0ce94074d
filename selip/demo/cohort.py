"""The demo cohort generator: exams on disk and the manifest that lists them.

Layout under ``out_dir``::

    manifest.csv                       exam_id,t1,t2,flair,dwi,adc,report,label,mask
    truth.jsonl                        what each (exam, sequence) pair shows (truth.py)
    exams/demo_0000/{t1,t2,flair,dwi,adc,mask}.nii.gz

Files are byte-identical for a given seed (gzip written with mtime 0) and every file is
written atomically (a temporary sibling renamed over the final name), so an interrupted
run never leaves a truncated volume under its real name.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from selip.demo.chinese import check_language
from selip.demo.contrasts import SEQUENCES
from selip.demo.exams import ExamPlan, ExamVolumes, check_seed, plan_exam, synthesize_exam
from selip.demo.truth import TRUTH_FILE, pair_truths, write_truth
from selip.io.atomic import atomic_write_bytes

#: Manifest columns, in order.
MANIFEST_COLUMNS = ("exam_id", *SEQUENCES, "report", "label", "mask")
_GZIP_LEVEL = 1  # MR noise does not compress: higher levels cost 5x the time for ~1 %


def nifti_gz_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    """A ``.nii.gz`` file's bytes for ``data`` ``(X, Y, Z)`` with a ``(4, 4)`` affine.

    The dtype of ``data`` is kept (int16 images, uint8 masks; nibabel writes scl_slope 1,
    scl_inter 0 for them). qform and sform both carry the affine as scanner coordinates.
    The gzip header's timestamp is 0 so the bytes depend on the data alone.
    """
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"selip synthetic demo cohort"
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=_GZIP_LEVEL, mtime=0)


def write_exam(plan: ExamPlan, volumes: ExamVolumes, out_dir: Path,
               language: str = "en") -> dict[str, str]:
    """Write one exam's NIfTI files under ``out_dir/exams/<exam_id>/``.

    Returns:
        The exam's manifest row (paths relative to ``out_dir``, POSIX separators), its
        report in ``language`` (``en`` or ``zh``).
    """
    folder = Path("exams") / plan.exam_id
    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    row = {"exam_id": plan.exam_id, "report": plan.report(language), "label": plan.label}
    arrays = {**volumes.images, "mask": volumes.mask}
    for name, data in arrays.items():
        relative = folder / f"{name}.nii.gz"
        atomic_write_bytes(out_dir / relative, nifti_gz_bytes(data, volumes.affine),
                           durable=False)  # regenerated from the seed if lost
        row[name] = relative.as_posix()
    return row


def write_manifest(rows: list[dict[str, str]], path: Path) -> None:
    """Write the manifest CSV atomically; csv quoting keeps multi-line reports intact."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def generate_demo_cohort(out_dir: str | Path, num_exams: int = 200, seed: int = 0,
                         progress: bool = True, language: str = "en") -> Path:
    """Write the demo cohort into ``out_dir`` and return the path of ``out_dir/manifest.csv``.

    Synthetic head MRI exams on real anatomy (the MNI152 template shipped with nilearn),
    five sequences each (T1, T2, FLAIR, DWI, ADC), a report, a diagnosis label
    (``normal``, ``infarct``, ``tumour``, ``demyelination``) and a lesion mask per exam,
    and ``truth.jsonl``: the structured truth of every (exam, sequence) pair
    (:func:`selip.demo.truth.load_truth` reads it).

    Args:
        out_dir: output folder, created if missing; existing exam files are overwritten.
        num_exams: number of exams (>= 1). Exam ``k`` does not depend on ``num_exams``.
        seed: non-negative integer; the same seed gives byte-identical files.
        progress: show a progress bar over exams on stderr.
        language: the reports' language: ``en``, the English demo grammar (free text), or
            ``zh``, the authors' Chinese JSON reports (:mod:`selip.demo.chinese`).
            Only the report column depends on it; volumes, masks and labels do not.

    Raises:
        ValueError: for ``num_exams < 1``, a negative seed or an unknown language.
    """
    if isinstance(num_exams, bool) or not isinstance(num_exams, (int, np.integer)):
        raise ValueError(f"num_exams must be an integer >= 1, got {num_exams!r}")
    if num_exams < 1:
        raise ValueError(f"num_exams must be >= 1, got {num_exams}")
    seed = check_seed(seed)
    language = check_language(language)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, truths = [], []
    for index in tqdm(range(int(num_exams)), desc="demo exams", unit="exam", file=sys.stderr,
                      disable=not progress):
        plan = plan_exam(seed, index)
        rows.append(write_exam(plan, synthesize_exam(plan), out, language))
        truths += pair_truths(plan)
    write_truth(truths, out / TRUTH_FILE)
    manifest = out / "manifest.csv"
    write_manifest(rows, manifest)
    return manifest
