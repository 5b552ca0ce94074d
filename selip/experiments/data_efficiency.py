"""The data-efficiency table (the paper's point): SeLIP encoder vs scratch with few labels.

For each label fraction, classification with a linear probe and with fine-tuning from a
SeLIP checkpoint, and from scratch; then segmentation Dice from the checkpoint vs scratch.
Each run trains with ``selip fit`` (model selection on validation), then reports the best
checkpoint's metrics on the test split. Prints a table and saves it as JSON and Markdown.

    python -m selip.experiments.data_efficiency --encoder_ckpt CKPT [--out runs/data_efficiency]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from selip.data.atomic import atomic_write_text
from selip.lightning_cli import training_cli

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
CLASSIFY_MODES = ("linear", "finetune", "scratch")
SEGMENT_MODES = ("finetune", "scratch")


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


def run(encoder_ckpt: str, out: Path, extra: list[str], fractions: tuple[float, ...] = FRACTIONS,
        classify_config: str = "configs/classify.yaml",
        segment_config: str = "configs/segment.yaml") -> dict[str, Any]:
    """Train and test every setting; returns the results (also written under ``out``)."""
    results: dict[str, Any] = {"classification": [], "segmentation": []}
    for fraction in fractions:
        for mode in CLASSIFY_MODES:
            # scratch gets the checkpoint too: its architecture, with random weights
            metrics = fit_then_test(classify_config, out, f"classify_{mode}_{fraction}", [
                "--model.init_args.mode", mode, "--model.init_args.encoder_ckpt", encoder_ckpt,
                "--data.label_fraction", str(fraction), *extra])
            results["classification"].append({"mode": mode, "label_fraction": fraction,
                                              **metrics})
    for mode in SEGMENT_MODES:
        metrics = fit_then_test(segment_config, out, f"segment_{mode}", [
            "--model.init_args.mode", mode, "--model.init_args.encoder_ckpt", encoder_ckpt,
            *extra])
        results["segmentation"].append({"mode": mode, **metrics})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "data_efficiency.json", json.dumps(results, indent=2))
    atomic_write_text(out / "data_efficiency.md", to_markdown(results))
    return results


def to_markdown(results: dict[str, Any]) -> str:
    """The results as two Markdown tables (test split)."""
    lines = ["| classification (test) | labels | accuracy | F1 | AUROC |",
             "| --- | --- | --- | --- | --- |"]
    for row in results["classification"]:
        lines.append(f"| {row['mode']} | {row['label_fraction']:.0%} | "
                     f"{row.get('test/accuracy', float('nan')):.3f} | "
                     f"{row.get('test/f1', float('nan')):.3f} | "
                     f"{row.get('test/auroc', float('nan')):.3f} |")
    lines += ["", "| segmentation (test) | Dice |", "| --- | --- |"]
    for row in results["segmentation"]:
        lines.append(f"| {row['mode']} | {row.get('test/dice', float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder_ckpt", required=True, help="SeLIP pretraining checkpoint")
    parser.add_argument("--out", default="runs/data_efficiency")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    args, extra = parser.parse_known_args()
    results = run(args.encoder_ckpt, Path(args.out), extra, tuple(args.fractions))
    print("\n" + to_markdown(results))
    print(f"saved to {Path(args.out) / 'data_efficiency.md'}")


if __name__ == "__main__":
    main()
