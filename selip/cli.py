"""The ``selip`` command, selip's one entry module: ``fit | validate | test | predict``
(LightningCLI, :mod:`selip.training.lightning_cli`), and ``demo-data``, ``prepare`` and
``similarity`` for the data. The console script and the ranks that a launcher starts
(``python -m selip.cli``) both enter here.

Every user-facing failure (bad manifest, bad option) ends with a clear message on stderr
and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from selip._version import __version__
from selip.startup import imports_without_gc  # stdlib only: costs nothing at start

TRAINING_COMMANDS = ("fit", "validate", "test", "predict")

_USAGE = """usage: selip COMMAND [options]

commands:
  fit         train (e.g. selip fit --config configs/pretrain.yaml); also validate, test, predict
  demo-data   write the synthetic demo cohort (real MNI152 anatomy, reports, labels, masks)
  prepare     validate a manifest, build the similarity table, fill the preprocessing cache
  similarity  build or load the report-similarity table and print its key, path and size
  import      a hospital archive in: 'import dicom' (PACS export) or 'import bids', reports
              joined, manifest.csv written, no patient identifier kept
  export      write a pretraining checkpoint as a folder selip.load reads (no Lightning)
  embed       image and report embeddings of a manifest's split, with their ids (.npz/.parquet)
  search      the best-matching exams for a sentence, or reports for a volume

Run 'selip COMMAND --help' for the options of a command."""


def _fail(message: str, code: int = 2) -> int:
    print(f"selip: {message}", file=sys.stderr)
    return code


def demo_data(argv: Sequence[str]) -> int:
    """``selip demo-data --out DIR [--num-exams N] [--seed S] [--language {en,zh}]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="selip demo-data",
                                     description="Write the synthetic demo cohort.")
    parser.add_argument("--out", required=True, help="output folder (manifest.csv goes there)")
    parser.add_argument("--num-exams", type=int, default=200, help="number of exams (200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--language", choices=("en", "zh"), default="en",
                        help="report language: en, English free text (default); zh, the "
                             "authors' Chinese JSON reports (在<location>表现为<appearance>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from selip.demo import generate_demo_cohort

    try:
        manifest = generate_demo_cohort(args.out, num_exams=args.num_exams, seed=args.seed,
                                        progress=not args.quiet, language=args.language)
    except (ValueError, OSError) as err:
        return _fail(str(err))
    from selip.demo import TRUTH_FILE
    from selip.demo.exams import plan_exam
    from selip.demo.measure import measure_reports

    print(f"demo cohort: {args.num_exams} exams, manifest {manifest}, truth "
          f"{manifest.parent / TRUTH_FILE}")

    plans = [plan_exam(args.seed, i) for i in range(args.num_exams)]
    print(measure_reports(plans, args.language).summary())
    return 0


def _data_parser(prog: str, description: str) -> Any:
    """A parser for the ``data`` section of a selip config (other sections accepted)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from selip.data.selip_data import SelipData

    parser = ArgumentParser(prog=prog, description=description, exit_on_error=True)
    parser.add_argument("--config", action=ActionConfigFile, help="a selip YAML config")
    # SelipDataModule's arguments, without importing Lightning
    parser.add_class_arguments(SelipData, "data")
    # Sections a training config also holds; prepare reads only `data`.
    for section in ("model", "trainer", "optimizer", "lr_scheduler", "last_checkpoint"):
        parser.add_argument(f"--{section}", type=dict | None, default=None)
    parser.add_argument("--seed_everything", type=int | bool | None, default=None)
    parser.add_argument("--ckpt_path", type=str | None, default=None)
    return parser


def _prepare_parser() -> Any:
    parser = _data_parser("selip prepare", (
        "Validate the manifest of a config's data section (every problem at once), build "
        "the report-similarity table and fill the preprocessing cache in parallel."))
    parser.add_argument("--workers", type=int | None, default=None,
                        help="preprocessing processes (default: data.num_workers, at least 1)")
    parser.add_argument("--check_only", type=bool, default=False,
                        help="validate only, do not fill the preprocessing cache")
    parser.add_argument("--shard", type=str | None, default=None,
                        help="I/N: check and preprocess every N-th exam from the I-th (0-based; "
                             "default: the SLURM array task, else all); shard 0 also builds "
                             "the similarity table")
    return parser


def _report_unknown_tokens(datamodule: Any, config: Any) -> None:
    """Warn when the tokenizer cannot see much of the reports, or say what
    ``text_encoder.add_unknown_tokens`` will add."""
    text_encoder = ((config.model or {}).get("init_args") or {}).get("text_encoder") or {}
    if text_encoder.get("add_unknown_tokens") and datamodule.tokens.unknown.characters:
        added = datamodule.training_unknown_characters()
        print(f"text model: {len(added)} characters unknown to its tokenizer will be added "
              f"to the vocabulary (text_encoder.add_unknown_tokens): {''.join(added[:40])}"
              f"{' …' if len(added) > 40 else ''}")
        return
    message = datamodule.tokens.warning()
    if message:
        print(f"selip: warning: {message}", file=sys.stderr)


def prepare(argv: Sequence[str]) -> int:
    """``selip prepare --config CONFIG``: validate, then fill the cache."""
    with imports_without_gc():
        from selip.data.prepare import cache_jobs
        from selip.data.selip_data import SelipData
        from selip.importer.shard import ShardError, parse_shard

    parser = _prepare_parser()
    config = parser.parse_args(list(argv))
    try:
        shard = parse_shard(config.shard)
    except ShardError as err:
        return _fail(str(err))
    try:
        datamodule: SelipData = parser.instantiate_classes(config).data
        if not shard.whole:
            return _prepare_shard(datamodule, config, shard)
        datamodule.prepare_data()
        datamodule.setup()
    except ValueError as err:  # ManifestError included: one line per problem
        return _fail(str(err))
    splits = {k: len(v) for k, v in datamodule.datasets.items()}
    print(f"manifest {datamodule.manifest_path}: OK — {len(datamodule.pairs)} pairs "
          f"({', '.join(f'{k} {n}' for k, n in splits.items())}), "
          f"{len(datamodule.report_table)} unique report texts, "
          f"sequences {', '.join(datamodule.sequences)}")
    _report_unknown_tokens(datamodule, config)
    if config.check_only:
        return 0
    return _fill_and_report(datamodule, config, cache_jobs(datamodule.pairs))


def _fill_and_report(datamodule: Any, config: Any, jobs: list[Any]) -> int:
    """Fill the cache with ``jobs`` (``--workers`` processes) and say what was done."""
    from selip.data.prepare import fill_cache_jobs

    workers = config.workers or max(1, datamodule.num_workers)
    summary = fill_cache_jobs(datamodule.cache, jobs, workers=workers,
                              progress=datamodule.progress)
    print(f"cache {datamodule.cache_dir}: entries {summary.entries}, {summary.hits} already "
          f"cached, {summary.built} built in {summary.seconds:.1f} s")
    if summary.failures:
        return _fail("preprocessing failed for:\n  " + "\n  ".join(summary.failures))
    return 0


def _prepare_shard(datamodule: Any, config: Any, shard: Any) -> int:
    """``selip prepare --shard I/N``: the whole table is checked, but only this shard's
    exams' files are read (opened, hashed, preprocessed); only shard 0 builds the
    similarity table. Cache entries and file-check markers are written atomically under
    content keys, so the shards of an array fill one cache without locks."""
    manifest, mine, jobs = datamodule.source.prepare_shard(shard)
    print(f"manifest {datamodule.manifest_path}: shard {shard} — {len(mine.exams)} of "
          f"{len(manifest.exams)} exams, {len(jobs)} volumes and masks")
    if config.check_only:
        return 0
    return _fill_and_report(datamodule, config, jobs)


def similarity(argv: Sequence[str]) -> int:
    """``selip similarity --config CONFIG``: build or load the report-similarity table."""
    from selip.data.selip_data import SelipData
    from selip.similarity.describe import describe_lookup

    parser = _data_parser("selip similarity", (
        "Build (or load, when its key matches) the table of report similarity S over the "
        "unique pair texts of a config's manifest, and print its key, path, size and time."))
    parser.add_argument("--show", type=int, default=0,
                        help="also print the K most similar pairs of distinct texts")
    config = parser.parse_args(list(argv))
    try:
        datamodule: SelipData = parser.instantiate_classes(config).data
        if datamodule.similarity is None:
            return _fail("data.similarity is null: this config uses no similarity table")
        source = datamodule.source
        report_table = source.report_table(source.pair_texts(
            source.read_and_check(open_files=False)))
        table = source.open_similarity(report_table)
    except ValueError as err:
        return _fail(str(err))
    assert table is not None
    print(describe_lookup(table, report_table.texts, config.show))
    return 0


def export(argv: Sequence[str]) -> int:
    """``selip export --ckpt CKPT --out DIR``: a self-contained model folder."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="selip export", description="Write a pretraining checkpoint as a self-contained "
        "folder (safetensors weights, config.json, tokenizer, model card) that selip.load "
        "reads without Lightning.")
    parser.add_argument("--ckpt", required=True, help="a selip pretraining checkpoint")
    parser.add_argument("--out", required=True, help="the folder to create (new or empty)")
    args = parser.parse_args(argv)
    with imports_without_gc():
        from selip.inference import InferenceError, export_model

    try:
        folder = export_model(args.ckpt, args.out)
    except (InferenceError, OSError) as err:
        return _fail(str(err))
    print(f"exported to {folder}: model.safetensors, config.json, text_model/, README.md\n"
          f"load it with: selip.load({str(folder)!r})")
    return 0


def embed(argv: Sequence[str]) -> int:
    """``selip embed --ckpt C --manifest M [--split test] --out FILE.npz|FILE.parquet``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="selip embed", description="Image and report embeddings of every (exam, "
        "sequence) pair of a manifest's split, with exam, sequence and report ids (.npz, or "
        ".parquet with pyarrow installed).")
    parser.add_argument("--ckpt", required=True, help="a pretraining checkpoint or export")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument("--out", required=True, help="the .npz or .parquet file to write")
    parser.add_argument("--cache_dir", default=None,
                        help="the preprocessing cache (read when its settings match)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--device", default=None, help="cuda, cpu (default: cuda if any)")
    args = parser.parse_args(argv)
    with imports_without_gc():
        from selip.data.manifest import ManifestError
        from selip.data.nifti import VolumeError
        from selip.inference import InferenceError, load
        from selip.inference.archive import check_embeddings_path, embed_split, save_embeddings

    try:
        check_embeddings_path(args.out)  # a wrong suffix fails before the embedding, not after
        model = load(args.ckpt, args.device)
        found = embed_split(model, args.manifest, args.split, args.cache_dir, args.batch_size,
                            args.num_workers)
        path = save_embeddings(args.out, found)
    except (InferenceError, ManifestError, VolumeError, OSError, ValueError) as err:
        return _fail(str(err))
    print(f"embedded {len(found)} pairs ({args.split}) into {path}")
    return 0


def search_archive(argv: Sequence[str]) -> int:
    """``selip search --ckpt C --embeddings FILE (--text T | --image PATH) [--top 10]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="selip search", description="The exams (for a text) or reports (for an image) "
        "of an embedded archive that match best, with their scaled similarity.")
    parser.add_argument("--ckpt", required=True, help="the checkpoint or export that embedded it")
    parser.add_argument("--embeddings", required=True,
                        help="a .npz or .parquet written by selip embed")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a report sentence")
    query.add_argument("--image", help="a NIfTI volume")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    with imports_without_gc():
        from selip.data.nifti import VolumeError
        from selip.inference import InferenceError, load
        from selip.inference.archive import load_embeddings, search

    try:
        model = load(args.ckpt, args.device)
        archive = load_embeddings(args.embeddings)
        if archive.image.shape[1] != model.embed_dim:
            return _fail(f"{args.embeddings} holds {archive.image.shape[1]}-d embeddings, the "
                         f"model makes {model.embed_dim}-d ones: embed with this model")
        hits = search(model, archive, args.text, args.image, args.top)
    except (InferenceError, VolumeError, OSError, ValueError) as err:
        return _fail(str(err))
    for rank, (score, row) in enumerate(hits, 1):
        where = f"{archive.exam_id[row]} {archive.sequence[row]}"
        what = f"report {archive.report_id[row]}: {archive.report[row]}" if args.image \
            else f"report {archive.report_id[row]}"
        print(f"{rank:3d}. {score:7.3f}  {where}  {what}")
    return 0


def import_archive(argv: Sequence[str]) -> int:
    """``selip import dicom|bids SOURCE --reports FILE --out DIR``."""
    from selip.importer.command import run_import

    return run_import(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "import": import_archive,
    "embed": embed,
    "search": search_archive,
    "demo-data": demo_data,
    "export": export,
    "prepare": prepare,
    "similarity": similarity,
}


#: Exit status of a run stopped by a signal after saving (and not requeued by SLURM).
PREEMPTED_EXIT_CODE = 3


def _training(args: list[str]) -> int:
    """LightningCLI subcommands; user errors end with a message, not a traceback
    (set SELIP_DEBUG=1 to see the traceback). In a multi-process run every error line
    names the rank it comes from."""
    import os
    import traceback

    from selip.training.launch import RANK_FAILED_EXIT_CODE, RankFailed, rank_label
    from selip.training.lightning_compat import LightningVersionError

    try:
        with imports_without_gc():  # torch, Lightning, transformers: most of a start
            from selip.training.last_checkpoint import Preempted
            from selip.training.lightning_cli import run_training_cli
    except LightningVersionError as err:
        return _fail(str(err))
    try:
        return run_training_cli(args)
    except Preempted as stop:
        if stop.requeued:
            print(f"selip: {stop}; the SLURM job is requeued and resumes from it", flush=True)
            return 0
        print(f"selip: {stop}; resume with the same command and --ckpt_path last",
              file=sys.stderr, flush=True)
        return PREEMPTED_EXIT_CODE
    except RankFailed as err:  # another rank died first: that is the error to report
        return _fail(str(err), code=RANK_FAILED_EXIT_CODE)
    except ValueError as err:  # ManifestError, bad settings, bad checkpoints
        if os.environ.get("SELIP_DEBUG"):
            raise
        return _fail(f"{rank_label()}{err}")
    except Exception as err:
        if not rank_label():
            raise  # one process: Python's own traceback says it all
        traceback.print_exc()
        return _fail(f"{rank_label()}failed with {type(err).__name__}: {err}", code=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``selip`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0
    if args[0] == "--version":
        print(f"selip {__version__}")
        return 0
    from selip.similarity.legacy_keys import translate_arguments
    from selip.training.quiet import quiet_third_party

    quiet_third_party()  # named third-party noise only (selip.training.quiet)
    args = translate_arguments(args)  # configs written before the data.similarity block
    if args[0] in TRAINING_COMMANDS:
        return _training(args)
    command = COMMANDS.get(args[0])
    if command is None:
        return _fail(f"unknown command '{args[0]}'\n{_USAGE}")
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
