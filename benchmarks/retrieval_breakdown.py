"""Where image→text clinical retrieval misses, per truth signature, against the prior.

``learning.py`` reports one clinical R@5 per run. This splits it by what each image query
shows — its sequence, the exam's diagnosis and the finding's canonical appearance on that
sequence (``isointense signal``: the report names a lesion that the image does not show) —
and puts beside it the frequency prior (every report ranked by its training count) and
the share of each split the signature takes. It reads what ``selip test`` wrote
(``test_retrieval/retrieval_i2t_topk.csv``) and rebuilds the cohort's pairs, report ids
and truth exactly as training did (same manifest, sequences and flip setting), so no model
is run.

    .venv/bin/python benchmarks/retrieval_breakdown.py --out runs/learning_v2 \
        [--runs pretrain_selip_seed0 pretrain_clip_seed0] [--k 5]

Prints, per run, a table of signature → queries, clinical R@k of the run and of the prior,
and the share of the validation and test splits each signature takes (why the two splits'
priors differ). Writes ``<out>/retrieval_breakdown.md``.

``--frequency_weight RUN`` also re-scores RUN's last checkpoint with each text's training
frequency added: score = cos(image, text) + β · log(1 + training pairs of the text), β
chosen on validation's clinical R@k and reported on test beside β = 0 (which must give
back what ``selip test`` measured).
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path

import torch
from learning import SEQUENCES, Settings

from selip.data.cohort import Cohort, CohortSettings, PreparedCohort
from selip.data.description import train_report_counts
from selip.data.preprocess import PreprocessSettings
from selip.data.truth import PairTruth, load_truth
from selip.data.validation import Requirements
from selip.io.atomic import atomic_write_text

Signature = tuple[str, str, str]


def signature(truth: PairTruth) -> Signature:
    """``(sequence, diagnosis, appearance)``; appearance ``-`` for a normal exam."""
    shown = sorted({f.signal for f in truth.findings}) or ["-"]
    return truth.sequence, truth.diagnosis, "/".join(shown)


def cohort(settings: Settings) -> PreparedCohort:
    """The pretraining runs' pairs and report table (the prepared cohort, no Lightning):
    every sequence, flips on as in ``configs/demo.yaml`` (the mirrored texts take report
    ids), no similarity; the files were checked when the runs trained."""
    return Cohort(CohortSettings(
        Path(settings.manifest), Path(settings.cache_dir),
        PreprocessSettings(settings.spacing, settings.shape),
        Requirements(sequences=SEQUENCES), mirrored_texts=True, check_files=False,
        progress=False)).load()


def top_k(path: Path, k: int) -> dict[int, list[int]]:
    """query sample id → its first ``k`` retrieved report ids (``retrieval_i2t_topk.csv``)."""
    found: dict[int, list[tuple[int, int]]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            found[int(row["query_sample_id"])].append((int(row["position"]),
                                                        int(row["report_id"])))
    return {q: [r for _, r in sorted(rows)[:k]] for q, rows in found.items()}


def prior_top_k(prepared: PreparedCohort, split: str, k: int) -> list[int]:
    """The ``k`` report ids of ``split``'s pool with the most training pairs (ties by pool
    order, as the metric's prior ranks them)."""
    counts = train_report_counts(prepared.pairs, len(prepared.report_table))
    assert counts is not None
    pool = list(dict.fromkeys(p.report_id for p in prepared.pairs if p.split == split))
    order = sorted(range(len(pool)), key=lambda i: (-int(counts[pool[i]]), i))
    return [pool[i] for i in order[:k]]


def breakdown(prepared: PreparedCohort, manifest_dir: Path, retrieved: dict[int, list[int]],
              k: int) -> list[tuple[Signature, int, float, float]]:
    """Per signature of the test queries: count, the run's clinical R@k, the prior's."""
    truth = prepared.clinical_truth
    assert truth is not None, "the cohort has no truth.jsonl"
    truths = load_truth(manifest_dir)
    prior = prior_top_k(prepared, "test", k)

    def hit(sample_id: int, reports: list[int]) -> bool:
        query = int(truth.pair_classes[sample_id])
        return any(query in truth.report_classes[r].tolist() for r in reports)

    rows: dict[Signature, list[tuple[bool, bool]]] = defaultdict(list)
    for sample_id, reports in retrieved.items():
        pair = prepared.pairs[sample_id]
        sig = signature(truths[(pair.exam_id, SEQUENCES[pair.sequence_index])])
        rows[sig].append((hit(sample_id, reports), hit(sample_id, prior)))
    return [(sig, len(r), sum(a for a, _ in r) / len(r), sum(b for _, b in r) / len(r))
            for sig, r in sorted(rows.items())]


def split_shares(prepared: PreparedCohort, manifest_dir: Path) -> dict[str, Counter[str]]:
    """split → diagnosis → exams."""
    truths = load_truth(manifest_dir)
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    exams = {(p.split, p.exam_id) for p in prepared.pairs}
    for split, exam in exams:
        seen[split][truths[(exam, SEQUENCES[0])].diagnosis] += 1
    return seen


BETAS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


@torch.no_grad()
def frequency_weighted(prepared: PreparedCohort, settings: Settings, checkpoint: Path, k: int
                       ) -> str:
    """Clinical R@k of image→text retrieval with β · log(1 + training count) added to each
    text's cosine, β chosen on validation, per split (a markdown table)."""
    from torch.utils.data import DataLoader

    import selip
    from selip.data.cache import VolumeCache
    from selip.data.dataset import PairDataset

    model = selip.load(checkpoint, device="cpu")
    preprocess = PreprocessSettings(settings.spacing, settings.shape)
    if model.preprocess_settings != preprocess:  # the cohort's cache keys are under these
        raise SystemExit(f"{checkpoint} was trained with {model.preprocess_settings}, the "
                         f"cohort was prepared with {preprocess}")
    cache = VolumeCache(Path(settings.cache_dir), preprocess)
    truth = prepared.clinical_truth
    assert truth is not None
    counts = train_report_counts(prepared.pairs, len(prepared.report_table))
    assert counts is not None
    found: dict[str, list[float]] = {}
    for split in ("val", "test"):
        pairs = prepared.split(split)
        images = torch.cat([model.encode_batch(batch["image"].float(), [
            prepared.sequences[int(i)] for i in batch["sequence"]])
            for batch in DataLoader(PairDataset(pairs, cache, with_mask=False), batch_size=16)])
        pool = list(dict.fromkeys(p.report_id for p in pairs))
        texts = model.encode_texts([prepared.report_table.texts[i] for i in pool])
        cosine = images @ texts.T
        frequency = torch.log1p(counts[torch.tensor(pool)].double()).float()
        classes = [set(truth.report_classes[r].tolist()) for r in pool]
        for beta in BETAS:
            top = (cosine + beta * frequency).topk(k, dim=1).indices
            hits = [int(truth.pair_classes[p.sample_id]) in set().union(
                *(classes[j] for j in row)) for p, row in zip(pairs, top.tolist(), strict=True)]
            found.setdefault(split, []).append(sum(hits) / len(hits))
    best = max(range(len(BETAS)), key=lambda i: found["val"][i])
    lines = [f"| β | val clinical R@{k} | test clinical R@{k} |", "| --- | --- | --- |"]
    lines += [f"| {beta}{' (chosen on val)' if i == best else ''} | {found['val'][i]:.3f} | "
              f"{found['test'][i]:.3f} |" for i, beta in enumerate(BETAS)]
    return "\n".join(lines) + "\n"


def to_markdown(run: str, rows: list[tuple[Signature, int, float, float]], k: int) -> str:
    lines = [f"### {run}", "", f"| sequence | diagnosis | appearance | test queries | "
             f"clinical R@{k} | prior's |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {s} | {d} | {a} | {n} | {run_r:.2f} | {prior_r:.2f} |"
              for (s, d, a), n, run_r, prior_r in rows]
    groups: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for (_, diagnosis, appearance), n, run_r, prior_r in rows:
        group = ("normal exam" if diagnosis == "normal" else
                 "finding does not show on the sequence" if appearance == "isointense signal"
                 else "finding shows")
        groups[group].append((n, run_r, prior_r))
        groups["all"].append((n, run_r, prior_r))
    lines += ["", f"| queries | count | clinical R@{k} | prior's |", "| --- | --- | --- | --- |"]
    for group in ("finding shows", "normal exam", "finding does not show on the sequence",
                  "all"):
        members = groups[group]
        total = sum(n for n, _, _ in members) or 1
        lines.append(f"| {group} | {total} | {sum(n * r for n, r, _ in members) / total:.3f} "
                     f"| {sum(n * p for n, _, p in members) / total:.3f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/learning_v2"))
    parser.add_argument("--runs", nargs="*", default=None,
                        help="pretraining runs under --out (default: every one tested)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--frequency_weight", default=None, metavar="RUN",
                        help="re-score RUN's last checkpoint with the texts' training "
                             "frequency added (β chosen on validation)")
    args = parser.parse_args(argv)
    settings = Settings.saved(args.out, num_workers=0)
    prepared = cohort(settings)
    manifest_dir = Path(settings.manifest).parent
    shares = split_shares(prepared, manifest_dir)
    parts = ["## Split composition (exams per diagnosis)", "",
             "| split | " + " | ".join(sorted(shares["train"])) + " |",
             "| --- |" + " --- |" * len(shares["train"])]
    parts += [f"| {split} | " + " | ".join(str(shares[split][d]) for d in sorted(shares["train"]))
              + " |" for split in ("train", "val", "test")]
    parts.append("")
    runs = args.runs or sorted({p.parent.parent.parent.name for p in
                                args.out.glob("pretrain_*/version_*/test_retrieval/"
                                              "retrieval_i2t_topk.csv")})
    for run in runs:
        found = sorted((args.out / run).glob("version_*/test_retrieval/retrieval_i2t_topk.csv"))
        if not found:
            parts.append(f"### {run}\n\nnot tested yet\n")
            continue
        parts.append(to_markdown(run, breakdown(prepared, manifest_dir,
                                           top_k(found[-1], args.k), args.k),
                                 args.k))
    if args.frequency_weight:
        [checkpoint] = sorted((args.out / args.frequency_weight).glob(
            "version_0/checkpoints/last.ckpt"))
        parts += [f"### {args.frequency_weight}: the texts' training frequency added", "",
                  frequency_weighted(prepared, settings, checkpoint, args.k)]
    text = "\n".join(parts)
    print(text)
    atomic_write_text(args.out / "retrieval_breakdown.md", text)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
