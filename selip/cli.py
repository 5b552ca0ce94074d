"""The ``selip`` command: data helpers now, LightningCLI training commands as they land.

Every user-facing failure (bad manifest, bad option) ends with a clear message on stderr
and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from selip import __version__

_USAGE = """usage: selip COMMAND [options]

commands:
  demo-data   write the synthetic demo cohort (real MNI152 anatomy, reports, labels, masks)
  prepare     validate a manifest and fill the preprocessing cache (--config CONFIG)

Run 'selip COMMAND --help' for the options of a command."""


def _fail(message: str, code: int = 2) -> int:
    print(f"selip: {message}", file=sys.stderr)
    return code


def demo_data(argv: Sequence[str]) -> int:
    """``selip demo-data --out DIR [--num-exams N] [--seed S]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="selip demo-data",
                                     description="Write the synthetic demo cohort.")
    parser.add_argument("--out", required=True, help="output folder (manifest.csv goes there)")
    parser.add_argument("--num-exams", type=int, default=200, help="number of exams (200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from selip.data.demo import generate_demo_cohort

    try:
        manifest = generate_demo_cohort(args.out, num_exams=args.num_exams, seed=args.seed,
                                        progress=not args.quiet)
    except (ValueError, OSError) as err:
        return _fail(str(err))
    print(f"demo cohort: {args.num_exams} exams, manifest {manifest}")
    return 0


def _prepare_parser() -> Any:
    from jsonargparse import ActionConfigFile, ArgumentParser

    from selip.data.datamodule import SelipDataModule

    parser = ArgumentParser(prog="selip prepare", description=(
        "Validate the manifest of a config's data section (every problem at once) and "
        "fill the preprocessing cache in parallel."), exit_on_error=True)
    parser.add_argument("--config", action=ActionConfigFile, help="a selip YAML config")
    parser.add_class_arguments(SelipDataModule, "data")
    parser.add_argument("--workers", type=int | None, default=None,
                        help="preprocessing processes (default: data.num_workers, at least 1)")
    parser.add_argument("--check_only", type=bool, default=False,
                        help="validate only, do not fill the cache")
    # Sections a training config also holds; prepare reads only `data`.
    for section in ("model", "trainer", "optimizer", "lr_scheduler"):
        parser.add_argument(f"--{section}", type=dict | None, default=None)
    parser.add_argument("--seed_everything", type=int | bool | None, default=None)
    parser.add_argument("--ckpt_path", type=str | None, default=None)
    return parser


def prepare(argv: Sequence[str]) -> int:
    """``selip prepare --config CONFIG``: validate, then fill the cache."""
    from selip.data.datamodule import SelipDataModule
    from selip.data.prepare import fill_cache

    parser = _prepare_parser()
    config = parser.parse_args(list(argv))
    try:
        datamodule: SelipDataModule = parser.instantiate_classes(config).data
        datamodule.prepare_data()
        datamodule.setup()
    except ValueError as err:  # ManifestError included: one line per problem
        return _fail(str(err))
    splits = {k: len(v) for k, v in datamodule.datasets.items()}
    print(f"manifest {datamodule.manifest_path}: OK — {len(datamodule.pairs)} pairs "
          f"({', '.join(f'{k} {n}' for k, n in splits.items())}), "
          f"{len(datamodule.report_table)} unique report texts, "
          f"sequences {', '.join(datamodule.sequences)}")
    if config.check_only:
        return 0
    workers = config.workers or max(1, datamodule.num_workers)
    summary = fill_cache(datamodule.cache, datamodule.pairs, workers=workers,
                         progress=datamodule.progress)
    print(f"cache {datamodule.cache_dir}: entries {summary.entries}, {summary.hits} already "
          f"cached, {summary.built} built in {summary.seconds:.1f} s")
    if summary.failures:
        return _fail("preprocessing failed for:\n  " + "\n  ".join(summary.failures))
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "demo-data": demo_data,
    "prepare": prepare,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``selip`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0
    if args[0] == "--version":
        print(f"selip {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        return _fail(f"unknown command '{args[0]}'\n{_USAGE}")
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
