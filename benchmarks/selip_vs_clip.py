"""SeLIP vs CLIP on the demo cohort: same data, same steps, same seeds; only kl_weight differs.

For each seed, pretrains with ``kl_weight: 1`` (SeLIP) and ``kl_weight: 0`` (CLIP) from
``configs/demo.yaml``, then evaluates each final checkpoint (``last.ckpt``: the same number
of steps for both) on the test split: exact and semantic retrieval R@1/5/10, a linear
probe at 10 % and 100 % of the labels (accuracy, AUROC; ``configs/classify.yaml``) and
segmentation Dice after fine-tuning (``configs/segment.yaml``). Prints mean ± std over
seeds and saves ``selip_vs_clip.{json,md}`` under ``--out``.

Further arms vary only the soft-target normalisation of SeLIP (``SeLIP-linear``,
``SeLIP-softmax0.1``): the probe of why SeLIP does or does not win.

    .venv/bin/python benchmarks/selip_vs_clip.py                  # 3 seeds (about 1 h on 2 cores)
    .venv/bin/python benchmarks/selip_vs_clip.py --quick          # 1 seed, 1 epoch: a smoke run
    .venv/bin/python benchmarks/selip_vs_clip.py --arms SeLIP-linear SeLIP-softmax0.1 CLIP
    .venv/bin/python benchmarks/selip_vs_clip.py --extra --data.similarity paper
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from selip.demo import generate_demo_cohort
from selip.experiments.data_efficiency import fit_then_test
from selip.io.atomic import atomic_write_text
from selip.training.lightning_cli import training_cli

_SELIP = ["--model.init_args.kl_weight", "1.0"]
# arm -> its `selip fit` options on top of configs/demo.yaml.
ARMS: dict[str, list[str]] = {
    "SeLIP": _SELIP,  # the config's soft-target normalisation
    "CLIP": ["--model.init_args.kl_weight", "0.0"],
    "SeLIP-linear": [*_SELIP, "--model.init_args.soft_target_norm", "linear"],
    "SeLIP-softmax0.1": [*_SELIP, "--model.init_args.soft_target_norm", "softmax",
                         "--model.init_args.soft_target_temperature", "0.1"],
}
DEFAULT_ARMS = ["SeLIP", "CLIP"]
RETRIEVAL = [f"test/{d}_{kind}R@{k}" for d in ("i2t", "t2i") for kind in ("", "semantic_")
             for k in (1, 5, 10)]
PROBE_FRACTIONS = (0.1, 1.0)
SEGMENT_EPOCHS = 5
QUIET = ["--trainer.enable_progress_bar", "false"]


def pretrain_and_test(arm: str, seed: int, manifest: str, out: Path, epochs: int,
                      extra: list[str]) -> tuple[str, dict[str, float]]:
    """Pretrain one arm; returns its last checkpoint and its test retrieval metrics."""
    common = ["--config", "configs/demo.yaml", "--data.manifest", manifest,
              "--seed_everything", str(seed), *ARMS[arm],
              "--trainer.max_epochs", str(epochs), "--trainer.logger.init_args.save_dir",
              str(out), "--trainer.logger.init_args.name", f"{arm.lower()}_seed{seed}",
              *QUIET, *extra]
    fitted = training_cli(["fit", *common])
    last = Path(str(fitted.trainer.log_dir)) / "checkpoints" / "last.ckpt"
    tested = training_cli(["test", *common, "--ckpt_path", str(last)])
    metrics = {k: float(v) for k, v in tested.trainer.callback_metrics.items() if k in RETRIEVAL}
    return str(last), metrics


def downstream(checkpoint: str, name: str, seed: int, manifest: str, out: Path,
               epochs: int | None, segment_epochs: int) -> dict[str, float]:
    """Linear probes at 10 % and 100 % of the labels, and fine-tuned segmentation Dice."""
    common = ["--data.manifest", manifest, "--seed_everything", str(seed), *QUIET,
              "--model.init_args.encoder_ckpt", checkpoint]
    probe_epochs = [] if epochs is None else ["--trainer.max_epochs", str(epochs)]
    results: dict[str, float] = {}
    for fraction in PROBE_FRACTIONS:
        probe = fit_then_test("configs/classify.yaml", out, f"{name}_linear_{fraction}", [
            *common, *probe_epochs, "--model.init_args.mode", "linear",
            "--data.label_fraction", str(fraction)])
        results[f"linear{fraction:.0%}/accuracy"] = probe["test/accuracy"]
        results[f"linear{fraction:.0%}/auroc"] = probe["test/auroc"]
    if segment_epochs == 0:
        return results  # segmentation skipped
    segment = fit_then_test("configs/segment.yaml", out, f"{name}_segment", [
        *common, "--trainer.max_epochs", str(segment_epochs), "--model.init_args.mode",
        "finetune"])
    results["segment/dice"] = segment["test/dice"]
    return results


def seeds_per_arm(runs: list[dict[str, Any]]) -> dict[str, int]:
    """arm → how many seeds it ran."""
    arms = dict.fromkeys(r["arm"] for r in runs)
    return {arm: sum(r["arm"] == arm for r in runs) for arm in arms}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """arm → metric → (mean, std over seeds; std 0 for one seed), arms in run order."""
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r["metrics"] for r in runs if r["arm"] == arm]
        if not rows:
            continue
        table[arm] = {}
        for key in rows[0]:
            values = [row[key] for row in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            table[arm][key] = (statistics.fmean(values), spread)
    return table


def to_markdown(table: dict[str, dict[str, tuple[float, float]]],
                seeds: dict[str, int]) -> str:
    """mean ± std per arm (over ``seeds[arm]`` seeds), and each other arm's difference to
    CLIP when CLIP ran."""
    keys = list(next(iter(table.values())))
    compared = [arm for arm in table if arm != "CLIP"] if "CLIP" in table else []
    lines = ["| metric (test, mean ± std over seeds) | "
             + " | ".join(f"{arm} ({seeds[arm]} seed{'s' if seeds[arm] > 1 else ''})"
                          for arm in table)
             + "".join(f" | {arm} − CLIP" for arm in compared) + " |",
             "| --- |" + " --- |" * (len(table) + len(compared))]
    for key in keys:
        cells = [f"{table[arm][key][0]:.3f} ± {table[arm][key][1]:.3f}" for arm in table]
        cells += [f"{table[arm][key][0] - table['CLIP'][key][0]:+.3f}" for arm in compared]
        lines.append(f"| {key.removeprefix('test/')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="demo_data/manifest.csv")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="pretraining epochs (10)")
    parser.add_argument("--downstream_epochs", type=int, default=None,
                        help="linear-probe epochs (default: configs/classify.yaml's 5)")
    parser.add_argument("--segment_epochs", type=int, default=SEGMENT_EPOCHS,
                        help=f"segmentation fine-tuning epochs ({SEGMENT_EPOCHS}; 0 skips it)")
    parser.add_argument("--out", type=Path, default=Path("runs/selip_vs_clip"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch each: a smoke run")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=DEFAULT_ARMS,
                        help="which arms to run (default: SeLIP CLIP)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already saved under --out and skip their "
                             "(arm, seed): a cut-short benchmark continues where it stopped")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further `selip fit` options for the pretraining runs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.downstream_epochs = args.seeds[:1], 1, 1
        args.segment_epochs = 1
    if args.segment_epochs < 0:
        raise SystemExit(f"--segment_epochs must be >= 0 (0 skips segmentation), got "
                         f"{args.segment_epochs}")
        args.out = args.out.with_name(args.out.name + "_quick")
    if not Path(args.manifest).exists():
        generate_demo_cohort(Path(args.manifest).parent, num_exams=200, seed=0)
    runs, earlier_minutes = previous_runs(args.out / "selip_vs_clip.json", args)
    started = time.time() - 60 * earlier_minutes
    done = {(r["arm"], r["seed"]) for r in runs}
    for seed in args.seeds:
        for arm in args.arms:
            if (arm, seed) in done:
                continue
            checkpoint, metrics = pretrain_and_test(arm, seed, args.manifest, args.out,
                                                    args.epochs, args.extra)
            metrics.update(downstream(checkpoint, f"{arm.lower()}_seed{seed}", seed,
                                      args.manifest, args.out, args.downstream_epochs,
                                      args.segment_epochs))
            runs.append({"arm": arm, "seed": seed, "checkpoint": checkpoint,
                         "metrics": metrics})
            save(args, runs, started)  # after every run: a cut-short session keeps its results
    print(f"\nSeLIP vs CLIP, {len(args.seeds)} seed(s), {args.epochs} pretraining epochs, "
          f"{(time.time() - started) / 60:.1f} min\n")
    print(to_markdown(summarise(runs), seeds_per_arm(runs)))
    print(f"saved to {args.out / 'selip_vs_clip.json'}")


def previous_runs(path: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """With ``--resume``: the runs saved in ``path`` and their minutes; else none."""
    if not args.resume or not path.exists():
        return [], 0.0
    saved = json.loads(path.read_text())
    settings = (args.epochs, args.segment_epochs, args.extra)
    kept = (saved.get("epochs"), saved.get("segment_epochs"), saved.get("extra", []))
    if kept != settings:
        raise SystemExit(f"--resume: {path} holds runs with (epochs, segment_epochs, extra) = "
                         f"{kept}, not {settings}; use another --out")
    print(f"resuming: {len(saved['runs'])} run(s) kept from {path}")
    return list(saved["runs"]), float(saved.get("minutes", 0.0))


def save(args: argparse.Namespace, runs: list[dict[str, Any]], started: float) -> None:
    """Write the runs so far and their summary (JSON and Markdown) under ``args.out``."""
    table = summarise(runs)
    seeds = sorted({r["seed"] for r in runs})
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "selip_vs_clip.json", json.dumps(
        {"seeds": seeds, "epochs": args.epochs, "segment_epochs": args.segment_epochs,
         "arms": {arm: ARMS[arm] for arm in seeds_per_arm(runs)}, "extra": args.extra,
         "runs": runs,
         "minutes": round((time.time() - started) / 60, 1),
         "summary": {a: {k: list(v) for k, v in m.items()} for a, m in table.items()}},
        indent=2))
    atomic_write_text(args.out / "selip_vs_clip.md", to_markdown(table, seeds_per_arm(runs)))


if __name__ == "__main__":
    main()
