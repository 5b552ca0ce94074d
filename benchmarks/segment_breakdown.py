"""Where the segmentation Dice of ``learning.py`` is lost: per exam, by lesion kind and size.

The target is a FLAIR lesion Dice ≥ 0.5 from scratch; ``learning.py`` measured 0.449 on
test while validation reached 0.51–0.57. This re-scores every segmentation checkpoint that
``learning.py`` selected on validation (``segment_<arm>_seed<n>/*/checkpoints/best-*.ckpt``)
exam by exam on the validation and test splits, joins each exam to its structured truth
(``cohort/truth.jsonl``: the diagnosis, and the lesion's size as the mask shows it at the
benchmark's 3 mm grid) and prints the mean Dice per group, so a miss can be traced to the
lesions that cause it, and a split difference to its mix of lesions.

    .venv/bin/python benchmarks/segment_breakdown.py [--out runs/learning]

Scores are those of ``selip test`` (argmax of the whole 64³ volume, foreground Dice over
the exams whose mask has a lesion; the others are counted as clean or not). The table and
every exam's score are kept in ``<out>/segment_breakdown.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from learning import Settings, evaluation_datamodule

from selip.data.datamodule import SelipDataModule
from selip.data.truth import TRUTH_FILE, load_truth
from selip.dice import empty_clean, foreground_dice
from selip.io.atomic import atomic_write_text
from selip.tasks import SegmentationTask

SPLITS = ("val", "test")
#: lesion volume bins, in voxels of the 3 mm grid (27 mm³ each): < 1 ml, 1–4 ml, ≥ 4 ml
SIZE_BINS = ((0, 37, "< 1 ml"), (37, 148, "1–4 ml"), (148, 10**9, "≥ 4 ml"))


@dataclass
class ExamScore:
    """One exam's FLAIR segmentation by one checkpoint."""

    run: str          # e.g. ``scratch_seed0``
    split: str
    exam_id: str
    diagnosis: str
    lesion_voxels: int
    predicted_voxels: int
    dice: float       # NaN when the mask has no lesion
    clean: float      # 1.0 when a lesion-free exam is predicted empty; NaN with a lesion


def checkpoints(out: Path) -> list[tuple[str, Path]]:
    """(run name, best checkpoint) of every segmentation run ``learning.py`` saved."""
    found = []
    for path in sorted(out.glob("segment_*_seed*/*/checkpoints/best-*.ckpt")):
        match = re.fullmatch(r"segment_(.+_seed\d+)", path.parents[2].name)
        if match:
            found.append((match.group(1), path))
    return found


@torch.no_grad()
def score(run: str, checkpoint: Path, datamodule: SelipDataModule,
          diagnoses: dict[str, str]) -> list[ExamScore]:
    """Every val and test exam's Dice (or clean) under ``checkpoint``."""
    task = SegmentationTask.load_from_checkpoint(checkpoint, map_location="cpu")
    task.eval()
    rows = []
    for split in SPLITS:
        datamodule.predict_split = split
        for batch in datamodule.predict_dataloader():
            predicted = task(batch["image"].float()).argmax(1)
            target = (batch["mask"][:, 0] > 0).long()
            dice = foreground_dice(predicted, target, 2)[:, 0]
            clean = empty_clean(predicted, target, 2)[:, 0]
            for row, sample_id in enumerate(batch["sample_id"].tolist()):
                exam = datamodule.pairs[sample_id].exam_id
                rows.append(ExamScore(run, split, exam, diagnoses.get(exam, "?"),
                                      int(target[row].sum()), int(predicted[row].sum()),
                                      float(dice[row]), float(clean[row])))
    return rows


def _mean(values: Iterable[float]) -> float:
    kept = [v for v in values if v == v]
    return statistics.fmean(kept) if kept else float("nan")


def table(scores: list[ExamScore]) -> list[dict[str, Any]]:
    """Rows (family, split, group, exams, mean) pooled over seeds: the mean Dice of the
    lesion exams, grouped by diagnosis and by lesion volume, then of the lesion-free exams
    the share left clean and the mean voxels flagged; ``family`` is ``scratch`` or
    ``finetune`` (every pretrained arm); exams counts distinct exams."""
    rows: list[dict[str, Any]] = []
    for family in ("scratch", "finetune"):
        mine = [s for s in scores if s.run.startswith("scratch") == (family == "scratch")]
        for split in SPLITS:
            lesions = [s for s in mine if s.split == split and s.lesion_voxels > 0]
            groups: dict[str, list[ExamScore]] = {"all lesion exams": lesions}
            for s in lesions:
                groups.setdefault(s.diagnosis, []).append(s)
            for low, high, name in SIZE_BINS:
                groups[f"lesion {name}"] = [s for s in lesions
                                            if low <= s.lesion_voxels < high]
            for group, members in groups.items():
                rows.append({"family": family, "split": split, "group": group,
                             "exams": len({s.exam_id for s in members}),
                             "mean": _mean(s.dice for s in members)})
            normal = [s for s in mine if s.split == split and s.lesion_voxels == 0]
            rows.append({"family": family, "split": split, "group": "lesion-free: clean",
                         "exams": len({s.exam_id for s in normal}),
                         "mean": _mean(s.clean for s in normal)})
            rows.append({"family": family, "split": split,
                         "group": "lesion-free: voxels flagged (mean)",
                         "exams": len({s.exam_id for s in normal}),
                         "mean": _mean(float(s.predicted_voxels) for s in normal)})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per group, the two splits side by side for each family."""
    groups = list(dict.fromkeys(str(r["group"]) for r in rows))
    header = "| group | " + " | ".join(f"{f} {s} (exams)" for f in ("scratch", "finetune")
                                        for s in SPLITS) + " |"
    lines = [header, "| --- " * (1 + 2 * len(SPLITS)) + "|"]
    for group in groups:
        cells = []
        for family in ("scratch", "finetune"):
            for split in SPLITS:
                row = next((r for r in rows if r["family"] == family and r["split"] == split
                            and r["group"] == group), None)
                cells.append("–" if row is None or not row["exams"]
                             else f"{float(row['mean']):.3f} ({row['exams']})")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/learning"),
                        help="the folder learning.py wrote (default runs/learning)")
    parser.add_argument("--num_workers", type=int, default=2)
    args = parser.parse_args(argv)
    found = checkpoints(args.out)
    if not found:
        raise SystemExit(f"no segmentation checkpoint under {args.out}: run "
                         "benchmarks/learning.py first")
    settings = Settings.saved(args.out, args.num_workers)
    truth = load_truth(Path(settings.manifest).parent / TRUTH_FILE)
    diagnoses = {exam: pair.diagnosis for (exam, _), pair in truth.items()}
    datamodule = evaluation_datamodule(settings, ["flair"], require_mask=True)
    scores = []
    for run, checkpoint in found:
        print(f"scoring {run} ({checkpoint.name})", flush=True)
        scores += score(run, checkpoint, datamodule, diagnoses)
    rows = table(scores)
    print(markdown(rows))
    atomic_write_text(args.out / "segment_breakdown.json", json.dumps(
        {"table": rows, "exams": [asdict(s) for s in scores]}, indent=1))
    print(f"saved {args.out / 'segment_breakdown.json'}")


if __name__ == "__main__":
    main()
