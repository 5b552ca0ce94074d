"""The prepared cohort: manifest → validated pairs → report table → similarity lookup.

The plain layer under :class:`selip.data.datamodule.SelipDataModule`, usable without
Lightning (``selip prepare``, ``selip similarity``, ``selip embed`` and the benchmarks read
data through it). :class:`Cohort` holds the settings and does the work;
:meth:`Cohort.load` returns a :class:`PreparedCohort`, plain data: the sequences, classes,
pairs with their cache keys and report ids, the report table, S and the clinical truth.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from lightning_utilities.core.rank_zero import rank_zero_warn

from selip.data.cache import Kind, VolumeCache
from selip.data.manifest import ExamRecord, Manifest, ManifestError, read_manifest
from selip.data.pair import Pair
from selip.data.prepare import exam_cache_jobs
from selip.data.preprocess import PreprocessSettings
from selip.data.report_table import ReportTable
from selip.data.splits import assign_splits, labelled_subset
from selip.data.truth import TRUTH_FILE, load_truth, truth_classes
from selip.data.validation import Requirements, check_files, check_manifest, resolve_sequences
from selip.io.fingerprint import FileDigests
from selip.metrics import ClinicalTruth, clinical_truth
from selip.similarity.config import SimilarityConfig
from selip.similarity.lookup import SimilarityLookup, open_similarity
from selip.similarity.settings import SimilaritySettings
from selip.text.reports import NORMAL_REPORT_TEXT, parse_report, swap_laterality

#: The largest in-memory S over the evaluation splits' reports when S is computed per
#: batch (held by every rank; 1 GB of float16 is about 23k texts): beyond it validation
#: computes S as asked.
EVALUATION_TABLE_MAX_MB = 1024.0

CacheJob = tuple[str, Kind, Path]


def default_cache_dir() -> Path:
    """``$SELIP_CACHE_DIR``, else ``~/.cache/selip``."""
    return Path(os.environ.get("SELIP_CACHE_DIR", Path.home() / ".cache" / "selip"))


@dataclass(frozen=True)
class CohortSettings:
    """What selects, splits and checks a cohort's pairs (see ``SelipDataModule`` for each).

    ``mirrored_texts``: the flip's mirrored report texts take report ids too (training
    with flips). ``threads``: file checks and the similarity build in parallel.
    """

    manifest: Path
    cache_dir: Path
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    needs: Requirements = field(default_factory=Requirements)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    label_fraction: float = 1.0
    label_seed: int | None = None
    normal_report_text: str = NORMAL_REPORT_TEXT
    mirrored_texts: bool = True
    similarity: SimilaritySettings | None = None
    truth: Path | None = None
    check_files: bool = True
    progress: bool = True
    threads: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")


@dataclass
class PreparedCohort:
    """A cohort ready to train on: plain data, the same in every process.

    Attributes:
        sequences: sequence names; a pair's ``sequence_index`` indexes them.
        classes: label names; a pair's ``label`` indexes them.
        pairs: every sample (``sample_id`` indexes them), split ``train``/``val``/
            ``test`` (``unused``: left out by ``label_fraction``).
        report_table: the unique pair texts; ``report_id`` indexes them.
        similarity: S over ``report_table``'s texts, None without similarity.
        clinical_truth: what each pair shows, None without a truth file.
    """

    sequences: list[str]
    classes: list[str]
    pairs: list[Pair]
    report_table: ReportTable
    similarity: SimilarityLookup | None
    clinical_truth: ClinicalTruth | None

    def split(self, name: str) -> list[Pair]:
        """The pairs of split ``name``."""
        return [p for p in self.pairs if p.split == name]


def _label_order(labels: set[str]) -> list[str]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


class Cohort:
    """Reads, checks and prepares the cohort that :class:`CohortSettings` describe."""

    def __init__(self, settings: CohortSettings) -> None:
        self.settings = settings
        self.cache = VolumeCache(settings.cache_dir, settings.preprocess)
        self.digests = FileDigests(settings.cache_dir / "file_digests.json")
        # The rule is resolved here, once; the cohort's normal text counts as normal.
        self.similarity_rule: SimilarityConfig | None = (
            settings.similarity.rule(settings.normal_report_text) if settings.similarity
            else None)
        self._opened: tuple[list[str], SimilarityLookup] | None = None

    # -- validation and preparation ----------------------------------------------------
    def read_and_check(self, open_files: bool) -> Manifest:
        """Read the manifest and raise :class:`ManifestError` listing every problem."""
        s = self.settings
        manifest, problems = read_manifest(s.manifest)
        problems = check_manifest(manifest, problems, s.needs, open_files,
                                  s.preprocess.first_volume_of_4d, self.digests,
                                  s.cache_dir / "checked", num_threads=s.threads,
                                  progress=s.progress)
        if problems:
            raise ManifestError(problems)
        return manifest

    def prepare(self) -> SimilarityLookup | None:
        """Validate the manifest and every file it names, and build S (one process per
        node; the others load it in :meth:`load`)."""
        return self.similarity_of(self.read_and_check(open_files=self.settings.check_files))

    def prepare_shard(self, take: ShardTake) -> tuple[Manifest, Manifest, list[CacheJob]]:
        """One shard's part of :meth:`prepare`: the whole table is checked, but only the
        exams ``take`` keeps have their files read; the first shard builds S.

        Returns the whole manifest, the shard's and its cache jobs."""
        s = self.settings
        manifest = self.read_and_check(open_files=False)
        mine = Manifest(manifest.path, manifest.columns, take.take(manifest.exams))
        if s.check_files:
            problems = check_files(mine, s.needs, s.preprocess.first_volume_of_4d,
                                   self.digests, s.cache_dir / "checked",
                                   num_threads=s.threads, progress=s.progress)
            if problems:
                raise ManifestError(problems)
        if take.index == 0:
            self.similarity_of(manifest)
        sequences = resolve_sequences(manifest, s.needs.sequences)
        jobs = exam_cache_jobs(mine.exams, sequences, self.cache, self.digests)
        self.digests.save()
        return manifest, mine, jobs

    # -- report texts and their similarity ---------------------------------------------
    def pair_texts(self, manifest: Manifest) -> list[tuple[int, str, str]]:
        """(exam index, sequence, pair text) of every pair, in manifest order."""
        normal = self.settings.normal_report_text
        sequences = resolve_sequences(manifest, self.settings.needs.sequences)
        texts: list[tuple[int, str, str]] = []
        for index, exam in enumerate(manifest.exams):
            report = parse_report(exam.report, normal, sequences)
            texts += [(index, s, report.text_for(s, normal))
                      for s in sequences if s in exam.volumes]
        return texts

    def report_table(self, pair_texts: list[tuple[int, str, str]]) -> ReportTable:
        """The unique texts of :meth:`pair_texts` (with their mirrored versions when the
        flip is on)."""
        return ReportTable((t for _, _, t in pair_texts),
                           with_mirrored=self.settings.mirrored_texts)

    def similarity_of(self, manifest: Manifest) -> SimilarityLookup | None:
        """S over ``manifest``'s pair texts; None without similarity (no report parsed)."""
        if self.similarity_rule is None:
            return None
        return self.open_similarity(self.report_table(self.pair_texts(manifest)))

    def open_similarity(self, report_table: ReportTable) -> SimilarityLookup | None:
        """S over ``report_table``'s texts: the one already opened for the same texts, else
        loaded from the cache or built there (:func:`open_similarity`); None without
        similarity."""
        settings = self.settings.similarity
        if settings is None or self.similarity_rule is None:
            return None
        if self._opened is not None and self._opened[0] == report_table.texts:
            return self._opened[1]  # prepare opened it in this process; load asks again
        lookup = open_similarity(self.settings.cache_dir, report_table.texts,
                                 self.similarity_rule,
                                 settings.sizing(self.settings.threads, self.settings.progress))
        self._opened = (list(report_table.texts), lookup)
        return lookup

    # -- the pairs ---------------------------------------------------------------------
    def load(self) -> PreparedCohort:
        """Pairs, splits, report table, S and clinical truth (files not opened)."""
        s = self.settings
        # Re-read the digest memo: under DDP, rank 0 filled it in prepare.
        self.digests = FileDigests(s.cache_dir / "file_digests.json")
        manifest = self.read_and_check(open_files=False)
        sequences = resolve_sequences(manifest, s.needs.sequences)
        classes = _label_order({e.label for e in manifest.exams if e.label is not None})
        splits = assign_splits(manifest.exams, s.val_fraction, s.test_fraction, s.split_seed)
        if s.label_fraction < 1:
            train = {i: e.label for i, e in enumerate(manifest.exams) if splits[i] == "train"}
            kept = labelled_subset(train, s.label_fraction,
                                   s.split_seed if s.label_seed is None else s.label_seed)
            splits = [x if x != "train" or i in kept else "unused" for i, x in enumerate(splits)]
        texts = self.pair_texts(manifest)
        report_table = self.report_table(texts)  # reports parsed once, for both
        similarity = self.open_similarity(report_table)
        if s.needs.all_sequences:  # one sample per exam, carrying its first sequence's text
            first_per_exam: dict[int, tuple[int, str, str]] = {}
            for item in texts:
                first_per_exam.setdefault(item[0], item)
            texts = list(first_per_exam.values())
        pairs = [self._pair(sample_id, manifest, splits[i], i, sequence, text, sequences,
                            classes, report_table)
                 for sample_id, (i, sequence, text) in enumerate(texts)]
        if similarity is not None:
            ids = [p.report_id for p in pairs if p.split in ("val", "test")]
            assert s.similarity is not None
            similarity.keep_evaluation_table(np.asarray(ids, np.int64), min(
                EVALUATION_TABLE_MAX_MB, s.similarity.dense_max_mb))
        truth = self.clinical_truth(pairs, sequences, len(report_table))
        self.digests.save()
        return PreparedCohort(sequences, classes, pairs, report_table, similarity, truth)

    def _pair(self, sample_id: int, manifest: Manifest, split: str, exam_index: int,
              sequence: str, text: str, sequences: list[str], classes: list[str],
              report_table: ReportTable) -> Pair:
        exam = manifest.exams[exam_index]
        volumes = ([exam.volumes[s] for s in sequences] if self.settings.needs.all_sequences
                   else [exam.volumes[sequence]])
        report_id = report_table.id_of(text)
        mirrored = (report_table.id_of(swap_laterality(text)) if self.settings.mirrored_texts
                    else report_id)
        return Pair(
            sample_id=sample_id, exam_id=exam.exam_id, split=split,
            sequence_index=sequences.index(sequence), volumes=tuple(volumes),
            volume_keys=tuple(self.cache.key_of(v, "image", self.digests) for v in volumes),
            report_id=report_id, mirrored_report_id=mirrored,
            label=classes.index(exam.label) if exam.label is not None else None,
            mask=exam.mask,
            mask_key=(self.cache.key_of(exam.mask, "mask", self.digests)
                      if exam.mask is not None else None))

    def clinical_truth(self, pairs: list[Pair], sequences: list[str], report_count: int
                       ) -> ClinicalTruth | None:
        """The truth class of every pair (index = ``sample_id``) and those of the pairs
        carrying each report id, mirrored texts included (:func:`truth_classes`); None
        without a truth file, or when it names none of the pairs."""
        given = self.settings.truth
        path = given or self.settings.manifest.parent / TRUTH_FILE
        if given is None and not path.is_file():
            return None
        truths = {(exam, sequence.lower()): t for (exam, sequence), t in load_truth(path).items()}
        found = [truths.get((p.exam_id, sequences[p.sequence_index])) for p in pairs]
        known = sum(t is not None for t in found)
        if known < len(found):
            rank_zero_warn(f"{path}: {len(found) - known} of {len(found)} pairs have no truth "
                           "line" + ("; no clinical retrieval metrics" if not known else
                                     "; their clinical hits are their own report's only"))
        if not known:
            return None
        pair_classes, report_classes = truth_classes(
            [t.key if t is not None else None for t in found], [p.report_id for p in pairs],
            [p.mirrored_report_id for p in pairs] if self.settings.mirrored_texts else None,
            report_count)
        return clinical_truth(pair_classes, report_classes)


class ShardTake(Protocol):
    """What :meth:`Cohort.prepare_shard` needs of a shard (``selip.importer.shard.Shard``)."""

    @property
    def index(self) -> int:
        """The shard's position, 0-based (shard 0 builds S)."""
        ...

    def take(self, units: Sequence[ExamRecord]) -> list[ExamRecord]:
        """The shard's share of ``units``."""
        ...
