"""Does selip learn? Pretrain on a larger demo cohort, then measure against trivial baselines.

SeLIP against CLIP with ``--arms SeLIP CLIP`` (and the fixed-temperature arm with
``--arms SeLIP CLIP SeLIP-fixed-scale``). For each seed and arm, on one cohort of
``--exams`` demo exams (generated and cached once):

1. **Pretraining** (``configs/demo.yaml``, ``--pretrain_steps`` optimiser steps), then
   ``selip test`` of its last checkpoint: clinical R@5 (a retrieved report is a hit when
   its truth — the findings visible on that sequence — matches the query's) against the
   frequency prior (rank every report by how often it appears in training) and chance;
   the final logit scale and soft-target entropy of training.
2. **A frozen linear probe for diagnosis** on the pretrained encoder vs a randomly
   initialised encoder of the same architecture (seeded by the run's seed): each exam is
   the concatenation of its five sequences' pooled features (standardised), a
   multinomial logistic regression is fitted by L-BFGS with its L2 weight chosen on
   validation (CLIP's linear-probe protocol), at 10 % and 100 % of the training labels
   (stratified, drawn with the seed); test accuracy and macro AUROC.
3. **Segmentation Dice** (``configs/segment.yaml``, FLAIR, ``--segment_steps`` steps),
   from scratch (once per seed) and fine-tuned from each arm's encoder; the checkpoint is
   selected on validation and scored on test.

Prints mean ± std over seeds for every arm, the targets and whether each is met, and the
paired differences between arms seed by seed (the first arm minus each other one). Saves
``learning.{json,md}`` after every run, and each finished stage under ``stages/``, in
``--record`` (default ``--out``; the cohort, cache, logs and checkpoints stay under
``--out``): ``--resume`` continues a cut-short benchmark after the last stage it finished.
The record is a few kB of JSON, so it can be kept (committed) while ``--out`` is lost, and
a later ``--resume`` on a fresh machine goes on from it: an (arm, seed) whose pretraining
checkpoint is gone is pretrained again with all its later stages.

    .venv/bin/python benchmarks/learning.py                 # 600 exams, 3 seeds (2 h per arm-seed)
    .venv/bin/python benchmarks/learning.py --quick         # 40 small exams: a smoke run
    .venv/bin/python benchmarks/learning.py --arms SeLIP CLIP SeLIP-fixed-scale
    .venv/bin/python benchmarks/learning.py --arms CLIP --seed_ids 1 --resume \
        --record benchmarks/records/learning_v2   # one (arm, seed), added to a kept record
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchmetrics
from smoke import small_tower_options

from selip.data.augment import AugmentSettings
from selip.data.datamodule import SelipDataModule
from selip.data.splits import labelled_subset
from selip.demo import generate_demo_cohort
from selip.dice import LOSSES, empty_clean, foreground_dice
from selip.experiments.data_efficiency import fit_then_test, mean_std
from selip.io.atomic import atomic_write_text
from selip.models import ImageEncoder
from selip.tasks.downstream import load_pretrained_encoder
from selip.training.lightning_cli import training_cli

_SELIP = ["--model.init_args.kl_weight", "1.0"]
#: arm → its ``selip fit`` options on top of ``configs/demo.yaml``.
ARMS: dict[str, list[str]] = {
    "SeLIP": _SELIP,
    "CLIP": ["--model.init_args.kl_weight", "0.0"],
    # the authors trained with a fixed temperature: a flat Q cannot pull the scale down
    "SeLIP-fixed-scale": [*_SELIP, "--model.init_args.learn_logit_scale", "false"],
    "CLIP-fixed-scale": ["--model.init_args.kl_weight", "0.0",
                         "--model.init_args.learn_logit_scale", "false"],
    # soft-target normalisation variants (the probe of why SeLIP does or does not win)
    "SeLIP-linear": [*_SELIP, "--model.init_args.soft_target_norm", "linear"],
    "SeLIP-softmax0.1": [*_SELIP, "--model.init_args.soft_target_norm", "softmax",
                         "--model.init_args.soft_target_temperature", "0.1"],
}
SEQUENCES = ("t1", "t2", "flair", "dwi", "adc")
PROBE_FRACTIONS = (0.1, 1.0)
#: L2 weights tried for the probe; the one with the best validation AUROC is kept.
PROBE_L2 = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
QUIET = ["--trainer.enable_progress_bar", "false"]
#: ``--quick``: the smoke runs' small towers, and a matching embedding width
QUICK_TOWERS = [*small_tower_options(), "--model.init_args.embed_dim", "16"]
#: the segmentation loss of every run recorded before ``--segment_loss`` existed
RECORDED_SEGMENT_LOSS = "batch_dice_fg_ce"
#: the targets (means over seeds); the probe's is a gain of 0.10 over the random encoder,
#: or an AUROC that leaves no room for one
TARGET_DICE = 0.5
TARGET_PROBE_GAIN = 0.10
TARGET_PROBE_AUROC = 0.97
TARGET_PRIOR_RATIO = 2.0
#: metrics compared seed by seed between arms (the first arm minus each other one)
PAIRED_METRICS = ("i2t_clinical_R@5", "t2i_clinical_R@5", "i2t_R@5", "i2t_median_rank",
                  "probe_selip_10%/auroc", "probe_selip_100%/auroc", "segment_finetune/dice")


@dataclass
class Settings:
    """What one benchmark run is: the cohort, the budgets and the volume geometry."""

    out: Path
    exams: int = 600
    pretrain_steps: int = 500
    segment_steps: int = 400
    # pinned here, not read from configs/segment.yaml, so one benchmark's arms and seeds
    # share it whatever the config's default becomes
    segment_loss: str = RECORDED_SEGMENT_LOSS
    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0)
    shape: tuple[int, int, int] = (64, 64, 64)
    num_workers: int = 2
    extra: list[str] = field(default_factory=list)
    #: where learning.{json,md} and stages/ go (None: ``out``)
    record: Path | None = None

    @property
    def record_dir(self) -> Path:
        return self.record or self.out

    @property
    def manifest(self) -> str:
        return str(self.out / "cohort" / "manifest.csv")

    @property
    def cache_dir(self) -> str:
        return str(self.out / "cache")

    def data_options(self) -> list[str]:
        """The ``selip fit`` options every run shares: cohort, cache, geometry, workers."""
        return ["--data.manifest", self.manifest, "--data.cache_dir", self.cache_dir,
                "--data.spacing", json.dumps(list(self.spacing)),
                "--data.shape", json.dumps(list(self.shape)),
                "--data.num_workers", str(self.num_workers), *QUIET]

    @classmethod
    def saved(cls, out: Path, num_workers: int) -> Settings:
        """The geometry a finished benchmark under ``out`` used (its ``learning.json``;
        the defaults when there is none), for scripts that re-read its runs."""
        path = out / "learning.json"  # where the record was not kept apart
        geometry = json.loads(path.read_text())["settings"] if path.is_file() else {}
        return cls(out, num_workers=num_workers,
                   spacing=tuple(geometry.get("spacing", cls.spacing)),
                   shape=tuple(geometry.get("shape", cls.shape)))

    def key(self) -> dict[str, Any]:
        """The settings a saved run must share to be kept by ``--resume``."""
        return {"exams": self.exams, "pretrain_steps": self.pretrain_steps,
                "segment_steps": self.segment_steps, "segment_loss": self.segment_loss,
                "spacing": list(self.spacing),
                "shape": list(self.shape), "extra": self.extra}


@dataclass
class Stages:
    """The finished stages of a run (pretraining, probes, each segmentation), each saved
    under ``<record>/stages/<name>.json`` when it ends. With ``--resume`` a benchmark stopped in
    the middle of an (arm, seed), e.g. at a session's end, goes on after the last stage it
    finished instead of pretraining that arm again."""

    settings: Settings
    resume: bool

    def path(self, name: str) -> Path:
        return self.settings.record_dir / "stages" / f"{name}.json"

    def saved(self, name: str) -> dict[str, Any] | None:
        """With ``resume``, the result saved under ``name`` by a run with the same settings
        whose ``checkpoint``, if it names one, still exists; else None."""
        path = self.path(name)
        if not (self.resume and path.is_file()):
            return None
        saved = json.loads(path.read_text())
        kept = saved.get("result", {})
        if saved.get("settings") == self.settings.key() and Path(
                kept.get("checkpoint", path)).exists():
            return dict(kept)
        return None

    def run(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``compute()``'s result, or the one ``saved`` under ``name``."""
        kept = self.saved(name)
        if kept is not None:
            print(f"resuming: stage {name} kept from {self.path(name)}", flush=True)
            return kept
        started = time.time()
        result = compute()
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"settings": self.settings.key(), "result": result,
                                            "minutes": round((time.time() - started) / 60, 1)},
                                           indent=2))
        return result

    def forget(self, *names: str) -> None:
        """Drop saved stages that a redone stage invalidates."""
        for name in names:
            self.path(name).unlink(missing_ok=True)


# -- 1. pretraining ---------------------------------------------------------------------------
RETRIEVAL_KEYS = ("i2t_clinical_R@5", "prior_i2t_clinical_R@5", "chance_i2t_clinical_R@5",
                  "t2i_clinical_R@5", "chance_t2i_clinical_R@5", "i2t_R@5", "prior_i2t_R@5",
                  "i2t_median_rank", "prior_i2t_median_rank")


def _trained_steps(checkpoint: Path) -> tuple[int, float]:
    """(optimiser steps, modification time) of a checkpoint: the furthest one wins."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return int(saved.get("global_step", 0)), checkpoint.stat().st_mtime


def pretrain(arm: str, seed: int, settings: Settings, resume: bool = False) -> dict[str, Any]:
    """Pretrain one arm for ``settings.pretrain_steps`` steps; returns its last
    ``checkpoint`` and its ``metrics``: test retrieval, final logit scale and soft-target
    entropy. With ``resume``, a pretraining cut short earlier continues from the furthest
    ``last.ckpt`` it wrote (every few minutes) instead of starting again."""
    name = f"pretrain_{arm.lower()}_seed{seed}"
    common = ["--config", "configs/demo.yaml", *settings.data_options(),
              "--seed_everything", str(seed), *ARMS[arm],
              "--trainer.max_epochs", "100000", "--trainer.max_steps",
              str(settings.pretrain_steps), "--trainer.logger.init_args.save_dir",
              str(settings.out), "--trainer.logger.init_args.name", name, *settings.extra]
    earlier = sorted((settings.out / name).glob("version_*/checkpoints/last.ckpt"),
                     key=_trained_steps) if resume else []
    if earlier:
        print(f"resuming: pretraining {name} from {earlier[-1]}", flush=True)
    continued = ["--ckpt_path", str(earlier[-1])] if earlier else []
    # a stop (a session's end) loses at most the last few minutes of training
    fitted = training_cli(["fit", *common, "--last_checkpoint.every_minutes", "5", *continued])
    trained = fitted.trainer.callback_metrics
    last = Path(str(fitted.trainer.log_dir)) / "checkpoints" / "last.ckpt"
    if not last.exists() and earlier:  # it had already reached max_steps: nothing to train
        last = earlier[-1]
    tested = training_cli(["test", *common, "--ckpt_path", str(last)])
    found = tested.trainer.callback_metrics
    metrics = {key: float(found[f"test/{key}"]) for key in RETRIEVAL_KEYS
               if f"test/{key}" in found}
    for key in ("train/logit_scale", "train/soft_target_entropy"):
        if key in trained:
            metrics[key.removeprefix("train/")] = float(trained[key])
    return {"checkpoint": str(last), "metrics": metrics}


# -- 2. the frozen linear probe ---------------------------------------------------------------
@dataclass
class ExamFeatures:
    """Frozen features of every labelled exam of one split: ``features`` (E, S·F) — the
    exam's sequences' pooled features side by side — and ``labels`` (E,) int64."""

    features: torch.Tensor
    labels: torch.Tensor
    exams: list[str] = field(default_factory=list)  # the rows' exam ids


def evaluation_datamodule(settings: Settings, sequences: Sequence[str],
                          require_label: bool = False, require_mask: bool = False
                          ) -> SelipDataModule:
    """The cohort's ``sequences``, one volume per sample, no augmentation, set up."""
    datamodule = SelipDataModule(
        settings.manifest, settings.cache_dir, sequences=list(sequences),
        spacing=settings.spacing, shape=settings.shape, batch_size=16, eval_batch_size=16,
        num_workers=settings.num_workers, max_length=64,
        augment=AugmentSettings(enabled=False), similarity=None, progress=False,
        require_label=require_label, require_mask=require_mask)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def probe_datamodule(settings: Settings) -> SelipDataModule:
    """The cohort's labelled exams, every sequence (the probe's features)."""
    return evaluation_datamodule(settings, SEQUENCES, require_label=True)


@torch.no_grad()
def exam_features(encoder: ImageEncoder, datamodule: SelipDataModule
                  ) -> dict[str, ExamFeatures]:
    """split → the frozen ``encoder``'s features of that split's exams (in eval mode)."""
    encoder.eval()
    splits: dict[str, ExamFeatures] = {}
    for split in ("train", "val", "test"):
        datamodule.predict_split = split
        per_exam: dict[str, dict[int, torch.Tensor]] = {}
        labels: dict[str, int] = {}
        for batch in datamodule.predict_dataloader():
            pooled = encoder(batch["image"].float())
            for row, sample_id in enumerate(batch["sample_id"].tolist()):
                exam = datamodule.pairs[sample_id].exam_id
                per_exam.setdefault(exam, {})[int(batch["sequence"][row])] = pooled[row]
                labels[exam] = int(batch["label"][row])
        exams = sorted(per_exam)
        splits[split] = ExamFeatures(
            torch.stack([torch.cat([per_exam[e][s] for s in sorted(per_exam[e])])
                         for e in exams]),
            torch.tensor([labels[e] for e in exams]), exams)
    return splits


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression on (E, F) standardised features by full-batch
    L-BFGS, with ``l2`` · ||W||² added to the mean cross-entropy."""
    torch.manual_seed(0)
    head = torch.nn.Linear(features.shape[1], num_classes)
    optimiser = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), labels) \
            + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return head


def probe(splits: dict[str, ExamFeatures], fraction: float, seed: int, num_classes: int
          ) -> dict[str, float]:
    """Test accuracy and macro AUROC of the logistic probe fitted on ``fraction`` of the
    training exams (stratified, drawn with ``seed``), L2 chosen on validation AUROC."""
    train = splits["train"]
    kept = sorted(labelled_subset({i: str(int(y)) for i, y in enumerate(train.labels)},
                                  fraction, seed))
    x, y = train.features[kept], train.labels[kept]
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)

    def scores(head: torch.nn.Linear, split: str) -> torch.Tensor:
        with torch.no_grad():
            return head((splits[split].features - mean) / std).softmax(-1)

    auroc = torchmetrics.AUROC(task="multiclass", num_classes=num_classes)
    best: tuple[float, torch.nn.Linear] | None = None
    for l2 in PROBE_L2:
        head = fit_logistic((x - mean) / std, y, num_classes, l2)
        value = float(auroc(scores(head, "val"), splits["val"].labels))
        if best is None or value > best[0]:
            best = (value, head)
    assert best is not None
    test = scores(best[1], "test")
    accuracy = float((test.argmax(-1) == splits["test"].labels).float().mean())
    return {"accuracy": accuracy, "auroc": float(auroc(test, splits["test"].labels))}


def probes(checkpoint: str, seed: int, settings: Settings, datamodule: SelipDataModule
           ) -> dict[str, float]:
    """The probe on the checkpoint's encoder and on a random one, at each label fraction,
    with the majority-class accuracy of the test split for reference."""
    pretrained = load_pretrained_encoder(checkpoint)
    torch.manual_seed(seed)
    random = ImageEncoder(pretrained.config)
    results: dict[str, float] = {}
    num_classes = len(datamodule.classes)
    for name, encoder in (("selip", pretrained), ("random", random)):
        splits = exam_features(encoder, datamodule)
        for fraction in PROBE_FRACTIONS:
            for metric, value in probe(splits, fraction, seed, num_classes).items():
                results[f"probe_{name}_{fraction:.0%}/{metric}"] = value
        test_labels = splits["test"].labels
    results["probe_majority/accuracy"] = float(
        torch.bincount(test_labels).max() / len(test_labels))
    return results


# -- 3. segmentation --------------------------------------------------------------------------
def segment(mode: str, checkpoint: str, name: str, seed: int, settings: Settings
            ) -> dict[str, float]:
    """Test Dice of a ``selip fit`` of ``configs/segment.yaml`` (mode ``scratch`` or
    ``finetune`` from ``checkpoint``; scratch takes only its architecture)."""
    tested = fit_then_test("configs/segment.yaml", settings.out, name, [
        *settings.data_options(), "--seed_everything", str(seed),
        "--model.init_args.mode", mode, "--model.init_args.encoder_ckpt", checkpoint,
        "--trainer.max_steps", str(settings.segment_steps),
        "--model.init_args.loss", settings.segment_loss,
        # validated 4 times: the checkpoint is selected on validation
        "--trainer.val_check_interval", str(max(1, settings.segment_steps // 4)),
        "--model.init_args.warmup_steps", str(max(1, settings.segment_steps // 10))])
    return {f"segment_{mode}/{m}": tested[f"test/{m}"] for m in ("dice", "empty_clean")
            if f"test/{m}" in tested}


def threshold_dice(settings: Settings, thresholds: int = 20) -> dict[str, float]:
    """The trivial segmentation baseline: call every FLAIR voxel above one global intensity
    a lesion, with the threshold that scores best on validation; its test Dice (over the
    exams with a lesion, as ``test/dice``) and empty-clean share (the others)."""
    datamodule = evaluation_datamodule(settings, ["flair"], require_mask=True)
    levels = torch.linspace(0.0, 1.0, thresholds + 1)[1:-1]  # scaled intensities are in [0, 1]

    def scores(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, E) Dice and empty-clean of each threshold on each exam of ``split``."""
        datamodule.predict_split = split
        dice, clean = [], []
        for batch in datamodule.predict_dataloader():
            image, target = batch["image"][:, 0].float(), batch["mask"][:, 0].long()
            target = (target > 0).long()  # every lesion class is foreground here
            for level in levels:
                predicted = (image > level).long()
                dice.append(foreground_dice(predicted, target, 2)[:, 0])
                clean.append(empty_clean(predicted, target, 2)[:, 0])
        rows = len(levels)
        return _by_threshold(dice, rows), _by_threshold(clean, rows)

    val_dice, _ = scores("val")
    best = int(torch.nanmean(val_dice, dim=1).nan_to_num(-1.0).argmax())
    test_dice, test_clean = scores("test")
    return {"segment_threshold/dice": float(torch.nanmean(test_dice[best])),
            "segment_threshold/empty_clean": float(torch.nanmean(test_clean[best])),
            "segment_threshold/level": float(levels[best])}


def _by_threshold(rows: list[torch.Tensor], thresholds: int) -> torch.Tensor:
    """Per-batch rows appended threshold by threshold → (thresholds, exams)."""
    per_batch = [torch.stack(rows[i:i + thresholds]) for i in range(0, len(rows), thresholds)]
    return torch.cat(per_batch, dim=1)


# -- the table ----------------------------------------------------------------------------------
def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """arm → metric → (mean, std over the arm's seeds), arms and metrics in run order."""
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r["metrics"] for r in runs if r["arm"] == arm]
        keys = list(dict.fromkeys(k for row in rows for k in row))
        table[arm] = {k: mean_std([row.get(k, math.nan) for row in rows]) for k in keys}
    return table


def targets(table: dict[str, dict[str, tuple[float, float]]],
            runs: Sequence[dict[str, Any]] = ()) -> list[tuple[str, str, float, float, bool]]:
    """(arm, target, measured, wanted, met) for every target. With ``runs``, also whether
    fine-tuning beats scratch beyond the seed spread: the mean of the per-seed differences
    is positive and at least their standard deviation, over at least two seeds."""
    rows = []
    for arm, metric in table.items():
        def mean(key: str, metric: dict[str, tuple[float, float]] = metric) -> float:
            return metric.get(key, (math.nan, math.nan))[0]
        dice = mean("segment_scratch/dice")
        rows.append((arm, "segmentation Dice from scratch", dice, TARGET_DICE,
                     dice >= TARGET_DICE))
        for fraction in PROBE_FRACTIONS:
            found = mean(f"probe_selip_{fraction:.0%}/auroc")
            gain = found - mean(f"probe_random_{fraction:.0%}/auroc")
            rows.append((arm, f"probe AUROC gain over random (or AUROC ≥ {TARGET_PROBE_AUROC:g})"
                         f", {fraction:.0%} labels", gain, TARGET_PROBE_GAIN,
                         gain >= TARGET_PROBE_GAIN or found >= TARGET_PROBE_AUROC))
        found, prior = mean("i2t_clinical_R@5"), mean("prior_i2t_clinical_R@5")
        ratio = found / prior if prior > 0 else (math.inf if found > 0 else math.nan)
        rows.append((arm, "clinical R@5 ÷ frequency prior", ratio, TARGET_PRIOR_RATIO,
                     ratio >= TARGET_PRIOR_RATIO))
        if runs:
            gains = paired_differences(runs, (arm, "segment_finetune/dice"),
                                       (arm, "segment_scratch/dice"))
            gain, spread = mean_std(gains)
            rows.append((arm, "fine-tuned − scratch Dice, ≥ its seed spread (2+ seeds)", gain,
                         spread, len(gains) >= 2 and gain >= spread and gain > 0))
    return rows


def paired_differences(runs: Sequence[dict[str, Any]], first: tuple[str, str],
                       second: tuple[str, str]) -> list[float]:
    """``first`` minus ``second`` — each an (arm, metric) — for every seed both measured
    (finite), in seed order: the paired comparison that takes the seed's shared cohort
    split, initialisation and data order out of the difference."""
    def by_seed(arm: str, key: str) -> dict[int, float]:
        return {r["seed"]: r["metrics"][key] for r in runs
                if r["arm"] == arm and math.isfinite(r["metrics"].get(key, math.nan))}
    a, b = by_seed(*first), by_seed(*second)
    return [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())]


def paired_markdown(runs: Sequence[dict[str, Any]]) -> str:
    """The first arm minus each other arm, seed by seed, for ``PAIRED_METRICS``; empty with
    one arm."""
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    lines: list[str] = []
    for other in arms[1:]:
        lines += ["", f"| {arms[0]} − {other} (test) | per seed | mean ± std | "
                      f"{arms[0]} ahead |", "| --- | --- | --- | --- |"]
        for key in PAIRED_METRICS:
            gaps = paired_differences(runs, (arms[0], key), (other, key))
            if not gaps:
                continue
            mean, std = mean_std(gaps)
            # a rank is better when lower
            ahead = sum(g < 0 if key.endswith("rank") else g > 0 for g in gaps)
            lines.append(f"| {key} | " + ", ".join(f"{g:+.3f}" for g in gaps)
                         + f" | {mean:+.3f} ± {std:.3f} | {ahead} of {len(gaps)} |")
    return "\n".join(lines) + ("\n" if lines else "")


def to_markdown(table: dict[str, dict[str, tuple[float, float]]],
                seeds: dict[str, int], runs: Sequence[dict[str, Any]] = ()) -> str:
    """One column per arm (mean ± std over its seeds), the targets, then (with ``runs``)
    the paired differences between arms."""
    keys = list(dict.fromkeys(k for metrics in table.values() for k in metrics))
    lines = ["| metric (test) | " + " | ".join(f"{arm} ({seeds[arm]} seed(s))" for arm in table)
             + " |", "| --- |" + " --- |" * len(table)]
    for key in keys:
        cells = []
        for arm in table:
            mean, std = table[arm].get(key, (math.nan, math.nan))
            cells.append(f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "| arm | target | measured | wanted | met |", "| --- | --- | --- | --- | --- |"]
    for arm, name, measured, wanted, met in targets(table, runs):
        lines.append(f"| {arm} | {name} | {measured:.3f} | ≥ {wanted:.3g} | "
                     f"{'yes' if met else '**no**'} |")
    kept = [r for r in runs if r.get("source")]
    if kept:  # figures whose stages this record does not hold
        lines += ["", "Runs this record holds only as first reported (no saved stages):"]
        lines += [f"- {r['arm']} seed {r['seed']}: {r['source']}" for r in kept]
    return "\n".join(lines) + "\n" + paired_markdown(runs)


def seeds_per_arm(runs: list[dict[str, Any]]) -> dict[str, int]:
    """arm → how many seeds it ran."""
    arms = dict.fromkeys(r["arm"] for r in runs)
    return {arm: sum(r["arm"] == arm for r in runs) for arm in arms}


def save(settings: Settings, runs: list[dict[str, Any]], minutes: float) -> None:
    """The runs so far and their summary, as JSON and Markdown in the record folder."""
    table = summarise(runs)
    settings.record_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings.record_dir / "learning.json", json.dumps(
        {"settings": settings.key(), "runs": runs, "minutes": round(minutes, 1),
         "summary": {a: {k: list(v) for k, v in m.items()} for a, m in table.items()}},
        indent=2))
    atomic_write_text(settings.record_dir / "learning.md",
                      to_markdown(table, seeds_per_arm(runs), runs))


def previous_runs(settings: Settings, resume: bool) -> tuple[list[dict[str, Any]], float]:
    """With ``--resume``: the runs saved in the record folder and their minutes."""
    path = settings.record_dir / "learning.json"
    if not resume or not path.exists():
        return [], 0.0
    saved = json.loads(path.read_text())
    # runs saved before the loss was an option used batch Dice
    if "settings" in saved:
        saved["settings"] = {"segment_loss": RECORDED_SEGMENT_LOSS, **saved["settings"]}
    if saved.get("settings") != settings.key():
        raise SystemExit(f"--resume: {path} holds runs made with {saved.get('settings')}, "
                         f"not {settings.key()}; use another --out or --record")
    print(f"resuming: {len(saved['runs'])} run(s) kept from {path}")
    return list(saved["runs"]), float(saved.get("minutes", 0.0))


def ensure_cohort(settings: Settings) -> None:
    """Generate the demo cohort under ``out/cohort`` unless it is there already."""
    if not Path(settings.manifest).exists():
        generate_demo_cohort(Path(settings.manifest).parent, num_exams=settings.exams, seed=0)


@dataclass
class Baselines:
    """What runs share: the scratch segmentation of each seed (it does not depend on the
    arm), the threshold baseline (the same for every run) and the probes' data."""

    settings: Settings
    scratch: dict[int, dict[str, float]] = field(default_factory=dict)
    threshold: dict[str, float] = field(default_factory=dict)
    datamodule: SelipDataModule | None = None

    @classmethod
    def of(cls, settings: Settings, runs: list[dict[str, Any]]) -> Baselines:
        """The baselines the saved ``runs`` already measured (a resumed benchmark keeps
        its own)."""
        def picked(metrics: dict[str, float], prefix: str) -> dict[str, float]:
            return {k: v for k, v in metrics.items() if k.startswith(prefix)}
        return cls(settings, {r["seed"]: picked(r["metrics"], "segment_scratch/") for r in runs},
                   next((picked(r["metrics"], "segment_threshold/") for r in runs), {}))

    def probe_data(self) -> SelipDataModule:
        self.datamodule = self.datamodule or probe_datamodule(self.settings)
        return self.datamodule


def run_one(arm: str, seed: int, settings: Settings, stages: Stages, baselines: Baselines
            ) -> dict[str, Any]:
    """One (arm, seed): pretraining, the probes, the seed's scratch segmentation and the
    threshold baseline where not measured yet, then fine-tuning; each stage is saved as it
    ends."""
    name = f"{arm.lower()}_seed{seed}"
    if stages.saved(f"pretrain_{name}") is None:  # pretrained (again): nothing later holds
        stages.forget(f"probes_{name}", f"segment_{name}")
    found = stages.run(f"pretrain_{name}", lambda: pretrain(arm, seed, settings, stages.resume))
    checkpoint, metrics = found["checkpoint"], dict(found["metrics"])
    metrics.update(stages.run(f"probes_{name}", lambda: probes(
        checkpoint, seed, settings, baselines.probe_data())))
    if not baselines.scratch.get(seed):
        baselines.scratch[seed] = stages.run(f"segment_scratch_seed{seed}", lambda: segment(
            "scratch", checkpoint, f"segment_scratch_seed{seed}", seed, settings))
    metrics.update(baselines.scratch[seed])
    if not baselines.threshold:
        baselines.threshold = stages.run("segment_threshold", lambda: threshold_dice(settings))
    metrics.update(baselines.threshold)
    metrics.update(stages.run(f"segment_{name}", lambda: segment(
        "finetune", checkpoint, f"segment_{name}", seed, settings)))
    return {"arm": arm, "seed": seed, "checkpoint": checkpoint, "metrics": metrics}


def run(settings: Settings, arms: Sequence[str], seeds: Sequence[int], resume: bool
        ) -> list[dict[str, Any]]:
    """Every (seed, arm) not already saved; returns all runs."""
    settings.out.mkdir(parents=True, exist_ok=True)
    ensure_cohort(settings)
    runs, earlier = previous_runs(settings, resume)
    started = time.time() - 60 * earlier
    done = {(r["arm"], r["seed"]) for r in runs}
    stages, baselines = Stages(settings, resume), Baselines.of(settings, runs)
    for seed in seeds:
        for arm in arms:
            if (arm, seed) not in done:
                runs.append(run_one(arm, seed, settings, stages, baselines))
                save(settings, runs, (time.time() - started) / 60)
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default runs/learning, or runs/learning_quick)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (3)")
    parser.add_argument("--seed_ids", type=int, nargs="+", default=None,
                        help="these seeds instead of 0..N-1 (e.g. one seed of a long "
                             "benchmark per session, added to a kept --record)")
    parser.add_argument("--record", type=Path, default=None,
                        help="folder for learning.{json,md} and stages/ (default --out): "
                             "small files that can be kept apart from the checkpoints")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["SeLIP"])
    parser.add_argument("--exams", type=int, default=600, help="demo cohort size (600)")
    parser.add_argument("--pretrain_steps", type=int, default=500)
    parser.add_argument("--segment_steps", type=int, default=400)
    parser.add_argument("--segment_loss", default=RECORDED_SEGMENT_LOSS,
                        choices=LOSSES,
                        help="the segmentation runs' loss (default batch_dice_fg_ce, what "
                             "the recorded runs used)")
    parser.add_argument("--quick", action="store_true",
                        help="40 exams at 32³ voxels of 6 mm, 1 seed, a few steps, small towers: "
                             "a smoke run")
    parser.add_argument("--resume", action="store_true",
                        help="keep the (arm, seed) runs already saved under --out")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further `selip fit` options for the pretraining runs")
    args = parser.parse_args(argv)
    for name in ("seeds", "exams", "pretrain_steps", "segment_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seed_ids is not None and min(args.seed_ids) < 0:
        parser.error(f"--seed_ids must be >= 0, got {args.seed_ids}")
    out = args.out or Path("runs/learning_quick" if args.quick else "runs/learning")
    settings = Settings(out, args.exams, args.pretrain_steps, args.segment_steps,
                        segment_loss=args.segment_loss, extra=args.extra, record=args.record)
    if args.quick:
        settings = Settings(out, exams=40, pretrain_steps=4, segment_steps=2,
                            segment_loss=args.segment_loss, spacing=(6.0, 6.0, 6.0),
                            shape=(32, 32, 32), num_workers=0,
                            extra=[*QUICK_TOWERS, *args.extra], record=args.record)
        args.seeds = 1
    started = time.time()
    seeds = args.seed_ids if args.seed_ids is not None else range(args.seeds)
    runs = run(settings, args.arms, seeds, args.resume)
    table = summarise(runs)
    print(f"\nlearning benchmark: {settings.exams} exams, {settings.pretrain_steps} pretraining "
          f"and {settings.segment_steps} segmentation steps, "
          f"{(time.time() - started) / 60:.1f} min this run\n")
    print(to_markdown(table, seeds_per_arm(runs), runs))
    print(f"saved to {settings.record_dir / 'learning.md'}")


if __name__ == "__main__":
    main()
