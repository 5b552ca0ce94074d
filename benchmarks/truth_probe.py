"""Frozen probes for what the reports name — lesion side and region — on pretrained encoders.

``learning.py`` measured that a randomly initialised encoder already decodes the demo's diagnosis
(AUROC 0.89 with 100 % of the labels), so a diagnosis probe cannot show what pretraining
adds. The side (left or right) and the region of a lesion are what the report texts spell
out and what pooled features of a random encoder should carry least. This probes them with
the protocol of ``learning.py`` (each exam's five sequences' pooled features side by side,
standardised; multinomial logistic regression by L-BFGS, L2 chosen on validation AUROC) on
every checkpoint ``learning.py`` saved, against a random encoder of the same architecture
seeded with the run's seed:

- ``side``: abnormal exams whose findings all lie on one side (2 classes);
- ``region``: abnormal exams whose findings all lie in one region (its classes);
- ``diagnosis``: every exam, as in ``learning.py`` (for reference).

    .venv/bin/python benchmarks/truth_probe.py [--out runs/learning] [--arms SeLIP CLIP] \
        [--new_only]

Keeps every value measured so far in ``<out>/truth_probe.json``
(``encoder/seed<n>/target/fraction``) and prints the mean ± std over every seed on record
of each encoder asked for and of the random encoder; ``--new_only`` probes only the
checkpoints not on record yet.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import torch
from learning import ExamFeatures, Settings, exam_features, probe, probe_datamodule

from selip.data.truth import load_truth
from selip.io.atomic import atomic_write_text
from selip.models import ImageEncoder
from selip.tasks.downstream import load_pretrained_encoder

TARGETS = ("side", "region", "diagnosis")
FRACTIONS = (0.1, 1.0)


def exam_labels(truth_path: Path) -> dict[str, dict[str, str]]:
    """target → exam id → label, for the exams the target is defined on."""
    sides: dict[str, set[str]] = {}
    regions: dict[str, set[str]] = {}
    diagnosis: dict[str, str] = {}
    for (exam, _), pair in load_truth(truth_path).items():
        diagnosis[exam] = pair.diagnosis
        for finding in pair.findings:
            sides.setdefault(exam, set()).add(finding.side)
            regions.setdefault(exam, set()).add(finding.region)
    return {
        "side": {e: next(iter(s)) for e, s in sides.items() if len(s) == 1},
        "region": {e: next(iter(r)) for e, r in regions.items() if len(r) == 1},
        "diagnosis": diagnosis,
    }


def relabel(splits: dict[str, ExamFeatures], labels: dict[str, str]
            ) -> tuple[dict[str, ExamFeatures], int]:
    """The exams of each split that ``labels`` covers, labelled with class indices (classes
    absent from the training split are dropped)."""
    classes = sorted({labels[e] for e in splits["train"].exams if e in labels})
    index = {name: i for i, name in enumerate(classes)}
    out = {}
    for split, found in splits.items():
        rows = [i for i, e in enumerate(found.exams) if labels.get(e) in index]
        out[split] = ExamFeatures(found.features[rows],
                                  torch.tensor([index[labels[found.exams[i]]] for i in rows]),
                                  [found.exams[i] for i in rows])
    return out, len(classes)


def checkpoints(out: Path, arms: list[str]) -> list[tuple[str, int, Path]]:
    """(arm, seed, last.ckpt) of every pretraining run ``learning.py`` saved under ``out``."""
    found = []
    for arm in arms:
        folder = arm.lower()
        for path in sorted(out.glob(f"pretrain_{folder}_seed*/*/checkpoints/last.ckpt")):
            match = re.search(r"_seed(\d+)$", path.parents[2].name)
            if match:
                found.append((arm, int(match.group(1)), path))
    return found


def measured(saved_values: dict[str, float], encoder: str, seed: int) -> bool:
    """Whether ``truth_probe.json``'s values hold any probe of ``encoder`` at ``seed``."""
    return any(key.startswith(f"{encoder}/seed{seed}/") for key in saved_values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/learning"))
    parser.add_argument("--arms", nargs="+", default=["SeLIP", "CLIP", "SeLIP-fixed-scale"])
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--new_only", action="store_true",
                        help="skip the encoders (arm or random, and seed) already in "
                             "truth_probe.json: probe only runs learning.py added since")
    args = parser.parse_args(argv)
    settings = Settings.saved(args.out, args.num_workers)
    runs = checkpoints(args.out, args.arms)
    if not runs:
        parser.error(f"no pretraining checkpoints under {args.out} for {args.arms}: run "
                     "benchmarks/learning.py first")
    labels = exam_labels(Path(settings.manifest).parent)
    datamodule = probe_datamodule(settings)
    features: dict[str, ExamFeatures] | None = None
    saved_path = args.out / "truth_probe.json"
    # every (encoder, seed, target, fraction) measured so far; a rerun replaces its own keys
    saved_values = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    done_random: set[int] = set()
    for arm, seed, path in runs:
        if args.new_only and measured(saved_values, arm, seed) and (
                seed in done_random or measured(saved_values, "random", seed)):
            print(f"{arm:18s} seed {seed}: already in {saved_path}; skipped", flush=True)
            continue
        pretrained = load_pretrained_encoder(str(path))
        encoders = [(arm, pretrained)]
        if seed not in done_random:  # one random encoder per seed, as learning.py draws it
            torch.manual_seed(seed)
            encoders.append(("random", ImageEncoder(pretrained.config)))
            done_random.add(seed)
        for name, encoder in encoders:
            if args.new_only and measured(saved_values, name, seed):
                continue
            features = exam_features(encoder, datamodule)
            for target in TARGETS:
                splits, classes = relabel(features, labels[target])
                if any(len(set(f.labels.tolist())) < 2 for f in splits.values()):
                    print(f"{name:18s} seed {seed} {target:9s}: a split has fewer than two "
                          "classes of it; not probed", flush=True)
                    continue
                for fraction in FRACTIONS:
                    value = probe(splits, fraction, seed, classes)["auroc"]
                    saved_values[f"{name}/seed{seed}/{target}/{fraction}"] = value
                    print(f"{name:18s} seed {seed} {target:9s} {fraction:4.0%} labels: "
                          f"AUROC {value:.3f}", flush=True)
    if features is not None:
        sizes = {t: f" ({len(relabel(features, labels[t])[0]['test'].exams)})" for t in TARGETS}
    else:
        sizes = dict.fromkeys(TARGETS, "")
        print("nothing new to probe; the table holds what truth_probe.json has on record")
    # the table holds every seed on record for these encoders, this run's and earlier ones
    names = [*dict.fromkeys(arm for arm, _, _ in runs), "random"]
    print("\n| target (test exams) | labels | " + " | ".join(names) + " |")
    for target in TARGETS:
        for fraction in FRACTIONS:
            cells = []
            for name in names:
                key = rf"{re.escape(name)}/seed\d+/{target}/{re.escape(str(fraction))}"
                values = [v for k, v in sorted(saved_values.items()) if re.fullmatch(key, k)]
                std = statistics.stdev(values) if len(values) > 1 else 0.0  # as learning.py
                cells.append(f"{statistics.mean(values):.3f} ± {std:.3f} ({len(values)})"
                             if values else "—")
            print(f"| {target}{sizes[target]} | {fraction:.0%} | " + " | ".join(cells) + " |")
    atomic_write_text(saved_path, json.dumps(saved_values, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
