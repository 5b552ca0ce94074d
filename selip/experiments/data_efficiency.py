"""The data-efficiency table (the paper's point): SeLIP encoder vs scratch with few labels.

For each label fraction, classification with a linear probe and with fine-tuning from a
SeLIP checkpoint, and from scratch; then segmentation Dice from the checkpoint vs scratch.
Every setting runs once per seed: the seed fixes the initialisation, the training order
(``seed_everything``) and which training exams keep their labels (``data.label_seed``);
the val/test split stays the same. Each run trains with ``selip fit`` for the config's
``trainer.max_steps`` optimiser steps — the same at every label fraction — selects its
checkpoint on validation, and reports that checkpoint's metrics on the test split. The
table gives each metric's mean ± std over the seeds; it is printed and saved as JSON and
Markdown — after every run, so a table cut short keeps what it measured and ``--resume``
continues it, running only the (mode, fraction, seed) it does not hold yet.

    python -m selip.experiments.data_efficiency --encoder_ckpt CKPT [--seeds 3] [--quick] \
        [--resume]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from selip.io.atomic import atomic_write_text
from selip.training.lightning_cli import training_cli

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
# random_linear: the linear probe's baseline, the same probe on a random frozen encoder.
CLASSIFY_MODES = ("linear", "random_linear", "finetune", "scratch")
SEGMENT_MODES = ("finetune", "scratch")
SEEDS = 3
CLASSIFY_METRICS = ("accuracy", "f1", "auroc")
SEGMENT_METRICS = ("dice", "empty_clean")
#: ``--quick``: one seed, two fractions, a few steps (a smoke run of the whole pipeline).
QUICK_FRACTIONS = (0.1, 1.0)
QUICK_OVERRIDES = ("--trainer.max_steps", "20", "--trainer.val_check_interval", "10",
                   "--model.init_args.warmup_steps", "2")


def fit_then_test(config: str, out: Path, name: str, overrides: list[str]) -> dict[str, float]:
    """``selip fit`` then ``selip test`` of its best checkpoint (selected on validation);
    returns the ``test/*`` metrics. Runs go under ``out/name``."""
    root = ["--trainer.logger.init_args.save_dir", str(out),
            "--trainer.logger.init_args.name", name]
    cli = training_cli(["fit", "--config", config, *root, *overrides])
    best = getattr(cli.trainer.checkpoint_callback, "best_model_path", "") or "last"
    tested = training_cli(["test", "--config", config, *root, *overrides, "--ckpt_path", best])
    return {k: float(v) for k, v in tested.trainer.callback_metrics.items()
            if k.startswith("test/")}


def seed_overrides(seed: int) -> list[str]:
    """The command-line options that give a run its seed: initialisation and training
    order (``seed_everything``, which the loader's shuffle follows) and the labelled
    subset (``data.label_seed``)."""
    if seed < 0:
        raise ValueError(f"seeds must be >= 0, got {seed}")
    return ["--seed_everything", str(seed), "--data.label_seed", str(seed)]


RunKey = tuple[str, str, float, int]  # (task, mode, label fraction, seed)
#: each task's name in run names and keys → its rows' key in the table
TABLES = {"classify": "classification", "segment": "segmentation"}


def run_grid(config: str, task: str, modes: Sequence[str], fractions: Sequence[float],
             seeds: Sequence[int], encoder_ckpt: str, out: Path, extra: list[str],
             done: dict[RunKey, dict[str, Any]] | None = None,
             after_each: Callable[[list[dict[str, Any]]], None] | None = None
             ) -> list[dict[str, Any]]:
    """Fit and test ``config`` once per (fraction, mode, seed), in that order; a row per run
    with its ``mode``, ``label_fraction``, ``seed`` and ``test/*`` metrics. A run whose key
    is in ``done`` is not run again: its saved row is kept. ``after_each`` gets the rows so
    far after every run (to save them)."""
    rows: list[dict[str, Any]] = []
    total = len(fractions) * len(modes) * len(seeds)
    for fraction in fractions:
        for mode in modes:
            for seed in seeds:
                name = f"{task}_{mode}_{fraction}_seed{seed}"
                kept = (done or {}).get((task, mode, fraction, seed))
                if kept is not None:
                    print(f"[{task} {len(rows) + 1}/{total}] {name}: kept from the saved "
                          "table", flush=True)
                    rows.append(kept)
                    continue
                print(f"[{task} {len(rows) + 1}/{total}] {name}", flush=True)
                metrics = fit_then_test(config, out, name, [
                    "--model.init_args.mode", mode, "--model.init_args.encoder_ckpt",
                    encoder_ckpt, "--data.label_fraction", str(fraction),
                    *seed_overrides(seed), *extra])
                rows.append({"mode": mode, "label_fraction": fraction, "seed": seed,
                             **metrics})
                if after_each is not None:
                    after_each(rows)
    return rows


class ResumeError(ValueError):
    """``--resume`` cannot continue the table saved under ``--out``."""


def saved_runs(out: Path, settings: dict[str, Any]) -> dict[RunKey, dict[str, Any]]:
    """The runs of the table saved under ``out``, by (task, mode, fraction, seed); empty
    when there is none. A table made with other settings (another checkpoint, configs or
    extra options) is refused: its runs would not be comparable.

    Raises:
        ResumeError: the saved file is not a table, or was made with other settings.
    """
    path = out / "data_efficiency.json"
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(), parse_constant=float)
        rows = {task: list(saved[table]) for task, table in TABLES.items()}
    except (ValueError, KeyError, TypeError) as err:
        raise ResumeError(f"--resume: {path} is not a data-efficiency table ({err}); move it "
                         "away or choose another --out") from None
    before = saved.get("settings", {})
    differ = [k for k in settings if before.get(k) != settings[k]]
    if differ:
        raise ResumeError(
            f"--resume: {path} was made with other settings ("
            + "; ".join(f"{k}: saved {before.get(k)!r}, now {settings[k]!r}" for k in differ)
            + "); drop --resume to start afresh, or choose another --out")
    return {(task, r["mode"], float(r["label_fraction"]), int(r["seed"])): r
            for task, task_rows in rows.items() for r in task_rows}


def save(out: Path, results: dict[str, Any]) -> None:
    """Write ``results`` (with its summary) as JSON and Markdown under ``out``, each to a
    temporary name and renamed, so a cut-short table is never half written. ``seeds``
    gains every seed its rows hold (a resumed table may hold more than this call asked)."""
    results["seeds"] = sorted({*results["seeds"], *(int(r["seed"]) for table in
                                                    TABLES.values() for r in results[table])})
    results["summary"] = {
        "classification": summarize(results["classification"], CLASSIFY_METRICS),
        "segmentation": summarize(results["segmentation"], SEGMENT_METRICS)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "data_efficiency.json", json.dumps(results, indent=2))
    atomic_write_text(out / "data_efficiency.md", to_markdown(results))


def run(encoder_ckpt: str, out: Path, extra: list[str], fractions: tuple[float, ...] = FRACTIONS,
        classify_config: str = "configs/classify.yaml",
        segment_config: str = "configs/segment.yaml",
        seeds: Sequence[int] = tuple(range(SEEDS)),
        segment_fractions: tuple[float, ...] = (1.0,), resume: bool = False) -> dict[str, Any]:
    """Train and test every (mode, fraction, seed); returns the per-run rows and their
    mean ± std over the seeds (also written under ``out`` after every run). With
    ``resume``, the runs of the table already saved under ``out`` are kept, not rerun, and
    the table holds every run on record (``seeds`` lists them all).

    Returns:
        ``{"seeds": [...], "settings": {...}, "classification": [row per run],
        "segmentation": [row per run], "summary": {"classification": [...],
        "segmentation": [...]}}``; a run's row has ``mode``, ``label_fraction``, ``seed``
        and its ``test/*`` metrics; a summary row has ``mode``, ``label_fraction``,
        ``runs`` and ``<metric>_mean`` / ``<metric>_std`` for each metric.
    """
    if not seeds:
        raise ValueError("seeds must name at least one seed, got none")
    settings = {"encoder_ckpt": encoder_ckpt, "extra": list(extra),
                "classify_config": classify_config, "segment_config": segment_config}
    done = saved_runs(out, settings) if resume else {}

    def on_record(task: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows``, then the saved runs of ``task`` they do not list: a resumed table
        never drops a run on record, even one outside this call's grid or not reached yet
        when it is cut short again."""
        listed = {(r["mode"], float(r["label_fraction"]), int(r["seed"])) for r in rows}
        return rows + [r for (t, *key), r in done.items() if t == task
                       and tuple(key) not in listed]

    results: dict[str, Any] = {"seeds": list(seeds), "settings": settings,
                               **{table: on_record(task, []) for task, table in TABLES.items()}}

    def keep(task: str) -> Callable[[list[dict[str, Any]]], None]:
        def after_each(rows: list[dict[str, Any]]) -> None:
            results[TABLES[task]] = on_record(task, rows)
            save(out, results)
        return after_each

    # scratch and random_linear get the checkpoint too: its architecture, random weights
    results["classification"] = on_record("classify", run_grid(
        classify_config, "classify", CLASSIFY_MODES, fractions, seeds, encoder_ckpt, out,
        extra, done, keep("classify")))
    results["segmentation"] = on_record("segment", run_grid(
        segment_config, "segment", SEGMENT_MODES, segment_fractions, seeds, encoder_ckpt,
        out, extra, done, keep("segment")))
    save(out, results)
    return results


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1) of the finite values; std 0 for one
    value, and (NaN, NaN) for none (e.g. a Dice every seed found nothing to score)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def summarize(rows: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (mode, label_fraction), in first-seen order: ``runs`` and, for each
    metric, ``<metric>_mean`` and ``<metric>_std`` over the seeds of ``test/<metric>``."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["label_fraction"]), []).append(row)
    summary = []
    for (mode, fraction), members in groups.items():
        entry: dict[str, Any] = {"mode": mode, "label_fraction": fraction,
                                 "runs": len(members)}
        for metric in metrics:
            mean, std = mean_std([r.get(f"test/{metric}", math.nan) for r in members])
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean, std
        summary.append(entry)
    return summary


def _cell(row: dict[str, Any], metric: str) -> str:
    return f"{row[f'{metric}_mean']:.3f} ± {row[f'{metric}_std']:.3f}"


def to_markdown(results: dict[str, Any]) -> str:
    """The summary as two Markdown tables (test split, mean ± std over the seeds)."""
    seeds = results.get("seeds", [])
    lines = [f"Test split; mean ± std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}).",
             "", "| classification (test) | labels | runs | accuracy | F1 | AUROC |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in results["summary"]["classification"]:
        lines.append(f"| {row['mode']} | {row['label_fraction']:.0%} | {row['runs']} | "
                     + " | ".join(_cell(row, m) for m in CLASSIFY_METRICS) + " |")
    lines += ["", "| segmentation (test) | labels | runs | Dice | empty clean |",
              "| --- | --- | --- | --- | --- |"]
    for row in results["summary"]["segmentation"]:
        lines.append(f"| {row['mode']} | {row['label_fraction']:.0%} | {row['runs']} | "
                     + " | ".join(_cell(row, m) for m in SEGMENT_METRICS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder_ckpt", required=True, help="SeLIP pretraining checkpoint")
    parser.add_argument("--out", default="runs/data_efficiency")
    parser.add_argument("--fractions", type=float, nargs="+", default=None,
                        help=f"label fractions (default {' '.join(map(str, FRACTIONS))})")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"runs per setting, seeds 0..N-1 (default {SEEDS})")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 seed, fractions 0.1 and 1, 20 steps per run")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs of the table already saved under --out (same "
                             "checkpoint and options) and run only the missing ones")
    args, extra = parser.parse_known_args(argv)
    count = args.seeds if args.seeds is not None else (1 if args.quick else SEEDS)
    if count < 1:
        parser.error(f"--seeds must be >= 1, got {count}")
    fractions = tuple(args.fractions or (QUICK_FRACTIONS if args.quick else FRACTIONS))
    if args.quick:
        extra = [*QUICK_OVERRIDES, *extra]  # later options win: extra can still override
    try:
        results = run(args.encoder_ckpt, Path(args.out), extra, fractions,
                      seeds=tuple(range(count)), resume=args.resume)
    except ResumeError as err:
        parser.exit(2, f"error: {err}\n")
    print("\n" + to_markdown(results))
    print(f"saved to {Path(args.out) / 'data_efficiency.md'}")


if __name__ == "__main__":
    main()
