"""``SelipDataModule``: the one LightningDataModule every selip task uses."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from selip.data.augment import AugmentSettings, augment_batch, step_generator
from selip.data.batch_similarity import BatchSimilarity
from selip.data.cache import VolumeCache
from selip.data.dataset import Pair, PairDataset
from selip.data.defaults import TEXT_INPUT
from selip.data.description import DataDescription, train_report_counts
from selip.data.intensity import IntensityScheme
from selip.data.manifest import Manifest, ManifestError, read_manifest
from selip.data.preprocess import PreprocessSettings
from selip.data.report_table import ReportTable
from selip.data.sampler import ResumableSampler
from selip.data.splits import assign_splits, labelled_subset
from selip.data.truth import TRUTH_FILE, load_truth, truth_classes
from selip.data.validation import Requirements, check_manifest, resolve_sequences
from selip.data.workers import ignore_stop_signals
from selip.io.fingerprint import FileDigests
from selip.metrics import ClinicalTruth, clinical_truth
from selip.similarity.lookup import SimilarityLookup, open_similarity
from selip.similarity.per_batch import PerBatchSimilarity
from selip.similarity.settings import SimilaritySettings, similarity_settings
from selip.text.reports import NORMAL_REPORT_TEXT, parse_report, swap_laterality
from selip.text.tokenizer import (
    UNKNOWN_TOKEN_WARN_SHARE,
    UnknownTokens,
    UnknownTokensWarning,
    load_tokenizer,
    tokenize,
    unknown_tokens,
)

#: The largest in-memory S over the evaluation splits' reports under ``per_batch`` (held by
#: every rank; 1 GB of float16 is about 23k texts): beyond it validation computes S as asked.
EVALUATION_TABLE_MAX_MB = 1024.0
#: The similarity block of a config that names none.
DEFAULT_SIMILARITY = SimilaritySettings(TEXT_INPUT.similarity)


def default_cache_dir() -> Path:
    """``$SELIP_CACHE_DIR``, else ``~/.cache/selip``."""
    return Path(os.environ.get("SELIP_CACHE_DIR", Path.home() / ".cache" / "selip"))


def _label_order(labels: set[str]) -> list[str]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


class SelipDataModule(pl.LightningDataModule):
    """Image–report pairs from a manifest, preprocessed through an on-disk cache.

    Args:
        manifest: CSV or JSONL manifest, one row per exam (see the README).
        cache_dir: preprocessed-volume cache (default ``$SELIP_CACHE_DIR`` or
            ``~/.cache/selip``).
        sequences: sequence columns to pair (default: every sequence column).
        spacing: target voxel size in mm, (D, H, W) = (S–I, A–P, L–R) order.
        shape: target array shape, (D, H, W) order.
        intensity: per-volume intensity scaling: ``median`` (divide by twice the median
            of the head's voxels; a lesion stays brighter than normal tissue) or
            ``percentile`` (the paper's: clip at ``intensity_percentiles``, rescale to
            [0, 1], which makes a bright lesion the white point and dims the rest).
        intensity_percentiles: the ``percentile`` scheme's clipping bounds.
        first_volume_of_4d: use the first volume of 4D files instead of rejecting them.
        batch_size: training batch size per device (train batches drop the incomplete last
            one, as an all-gather of unequal shapes would hang under DDP).
        eval_batch_size: validation/test batch size (default: ``batch_size``).
        num_workers: loader worker processes (persistent between epochs).
        pin_memory: pin host memory when CUDA is available.
        val_fraction: share of exams for validation when the manifest has no split.
        test_fraction: share of exams for test when the manifest has no split.
        split_seed: seed of that split.
        text_model: Hugging Face model folder or name for the tokenizer (default: the
            packaged MiniLM).
        max_length: maximum report length in tokens.
        normal_report_text: the text of a normal report (paired with every sequence).
        augment: training augmentation (None: the defaults).
        require_label: the task needs a label on every exam.
        require_mask: the task needs a mask on every exam.
        label_fraction: use only this share of the training exams (stratified by label,
            seeded by ``label_seed``), for data-efficiency curves; val and test stay whole.
        class_balanced: sample training pairs with weights 1 / (pairs of their class).
        shuffle_seed: seed of the training order (default: the run's ``seed_everything``,
            else 0); the order of epoch e depends only on it and e, so a run resumed
            mid-epoch continues the same order without repeating or skipping a batch.
        label_seed: seed of the ``label_fraction`` draw (default: ``split_seed``), so that
            repeated runs can draw other labelled subsets from the same val/test split.
        predict_split: the split ``selip predict`` runs on (``train``, ``val``, ``test``).
        stack_sequences: one sample per exam with its sequences stacked as image channels,
            in ``sequences`` order (for downstream tasks; every exam needs every sequence).
            Off: one sample per (exam, sequence) pair, as pretraining needs.
        similarity: the report-similarity block (:class:`SimilaritySettings`: preset,
            mode, top_k, size limits), or a preset name (``english``, ``paper``) as short
            for ``{preset: NAME}``; None: no table (tasks that do not use S).
        check_files: open every file during ``prepare_data`` to report bad volumes up front.
        progress: show progress bars.
        truth: what each pair shows (a ``truth.jsonl``, as ``selip demo-data`` writes),
            for the clinical R@K of retrieval; None: ``truth.jsonl`` beside the manifest
            when there is one (the demo), else none (real archives: no clinical metrics).
    """

    def __init__(
        self,
        manifest: str,
        cache_dir: str | None = None,
        sequences: list[str] | None = None,
        spacing: tuple[float, float, float] = (3.0, 3.0, 3.0),
        shape: tuple[int, int, int] = (64, 64, 64),
        intensity: IntensityScheme = "median",
        intensity_percentiles: tuple[float, float] = (0.1, 99.9),
        first_volume_of_4d: bool = False,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        text_model: str | None = TEXT_INPUT.text_model,
        max_length: int = TEXT_INPUT.max_length,
        normal_report_text: str = NORMAL_REPORT_TEXT,
        augment: AugmentSettings | None = None,
        require_label: bool = False,
        label_fraction: float = 1.0,
        predict_split: str = "test",
        class_balanced: bool = False,
        require_mask: bool = False,
        stack_sequences: bool = False,
        shuffle_seed: int | None = None,
        label_seed: int | None = None,
        similarity: SimilaritySettings | str | None = DEFAULT_SIMILARITY,
        check_files: bool = True,
        progress: bool = True,
        truth: str | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.manifest_path = Path(manifest).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.requested_sequences = [s.lower() for s in sequences] if sequences else None
        self.preprocess = PreprocessSettings(tuple(spacing), tuple(shape),  # type: ignore[arg-type]
                                             tuple(intensity_percentiles),  # type: ignore[arg-type]
                                             first_volume_of_4d, intensity)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed = split_seed
        self.text_model = text_model
        self.max_length = max_length
        self.normal_report_text = normal_report_text
        self.augment = augment or AugmentSettings()
        self.stack_sequences = stack_sequences
        self.needs = Requirements(tuple(self.requested_sequences) if self.requested_sequences
                                  else None, require_label, require_mask, stack_sequences)
        # The preset is resolved here, once; this datamodule's normal text counts as normal.
        self.similarity_settings = similarity_settings(similarity)
        self.similarity = (self.similarity_settings.rule(normal_report_text)
                           if self.similarity_settings else None)
        self.similarity_sizing = (self.similarity_settings or SimilaritySettings()).sizing(
            max(1, num_workers), progress)
        if not 0 < label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
        self.label_fraction = label_fraction
        self.class_balanced = class_balanced
        self.shuffle_seed = shuffle_seed
        self.label_seed = split_seed if label_seed is None else label_seed
        if predict_split not in ("train", "val", "test"):
            raise ValueError(f"predict_split must be train, val or test, got {predict_split!r}")
        self.predict_split = predict_split
        self.check_files = check_files
        self.progress = progress
        self.truth_path = Path(truth).expanduser() if truth else None
        self.cache = VolumeCache(self.cache_dir, self.preprocess)
        self.digests = FileDigests(self.cache_dir / "file_digests.json")
        self.sequences: list[str] = []
        self.classes: list[str] = []
        self.pairs: list[Pair] = []
        self.report_table = ReportTable([])
        self.similarity_table: SimilarityLookup | None = None
        self._similarity_texts: list[str] = []
        self.clinical_truth: ClinicalTruth | None = None
        self.datasets: dict[str, PairDataset] = {}

    # -- validation ---------------------------------------------------------------------
    def read_and_check(self, open_files: bool) -> Manifest:
        """Read the manifest and raise :class:`ManifestError` listing every problem."""
        manifest, problems = read_manifest(self.manifest_path)
        problems = check_manifest(manifest, problems, self.needs, open_files,
                                  self.preprocess.first_volume_of_4d, self.digests,
                                  self.cache_dir / "checked",
                                  num_threads=max(1, self.num_workers), progress=self.progress)
        if problems:
            raise ManifestError(problems)
        return manifest

    def prepare_data(self) -> None:
        """Validate the manifest and every file it names, and build the similarity table
        (runs on one process per node; the others load the table in ``setup``)."""
        manifest = self.read_and_check(open_files=self.check_files)
        self.similarity_table = self.load_similarity_table(self.build_report_table(manifest))

    # -- report texts and their similarity ------------------------------------------------
    def pair_texts(self, manifest: Manifest) -> list[tuple[int, str, str]]:
        """(exam index, sequence, pair text) of every pair, in manifest order."""
        sequences = resolve_sequences(manifest, self.requested_sequences)
        texts: list[tuple[int, str, str]] = []
        for index, exam in enumerate(manifest.exams):
            report = parse_report(exam.report, self.normal_report_text, sequences)
            texts += [(index, s, report.text_for(s, self.normal_report_text))
                      for s in sequences if s in exam.volumes]
        return texts

    def build_report_table(self, manifest: Manifest) -> ReportTable:
        """Unique pair texts (with their mirrored versions when the flip is on)."""
        return ReportTable((t for _, _, t in self.pair_texts(manifest)),
                           with_mirrored=self.augment.flips)

    def load_similarity_table(self, report_table: ReportTable) -> SimilarityLookup | None:
        """S over ``report_table``'s texts: the table already opened for the same texts,
        else loaded from the cache or built there (see :func:`open_similarity`); None
        without ``similarity``."""
        if self.similarity is None:
            return None
        opened = self.similarity_table
        if opened is not None and len(opened) == len(report_table.texts) \
                and self._similarity_texts == report_table.texts:
            return opened  # prepare_data opened it in this process; setup asks again
        self._similarity_texts = list(report_table.texts)
        return open_similarity(self.cache_dir, report_table.texts, self.similarity,
                               self.similarity_sizing)

    def describe(self) -> DataDescription:
        """What the tasks may know about this data (after ``setup``): the one object a
        task reads (:class:`selip.tasks.BaseTask` takes it in its ``setup``)."""
        return DataDescription(
            sequences=list(self.sequences), classes=list(self.classes),
            image_channels=self.image_channels, report_texts=self.report_table.texts,
            train_report_counts=train_report_counts(self.pairs, len(self.report_table)),
            similarity=self.similarity_table, place_similarity=self.place_similarity_table,
            clinical_truth=self.clinical_truth, manifest=self.manifest_path, pairs=self.pairs,
            preprocess=self.preprocess, vocabulary=self)

    def place_similarity_table(self, device: torch.device | str) -> bool:
        """Move the table to ``device`` if it fits the budget (tasks call this at fit start);
        True when placed, False when lookups read the memory map."""
        if self.similarity_table is None:
            return False
        assert self.similarity_settings is not None  # a table exists only with the block
        budget = int(self.similarity_settings.device_budget_mb * 2**20)
        return self.similarity_table.place(device, budget)

    # -- pairs --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build pairs, splits, the report table and the token tensors (once)."""
        if self.datasets:
            return
        # Re-read the digest memo: under DDP, rank 0 filled it in prepare_data.
        self.digests = FileDigests(self.cache_dir / "file_digests.json")
        manifest = self.read_and_check(open_files=False)
        self.sequences = resolve_sequences(manifest, self.requested_sequences)
        labels = {e.label for e in manifest.exams if e.label is not None}
        self.classes = _label_order(labels)
        splits = assign_splits(manifest.exams, self.val_fraction, self.test_fraction,
                               self.split_seed)
        texts = self.pair_texts(manifest)
        self.report_table = self.build_report_table(manifest)
        self.similarity_table = self.load_similarity_table(self.report_table)
        if self.label_fraction < 1:
            train = {i: e.label for i, e in enumerate(manifest.exams) if splits[i] == "train"}
            kept = labelled_subset(train, self.label_fraction, self.label_seed)
            splits = [s if s != "train" or i in kept else "unused" for i, s in enumerate(splits)]
        if self.stack_sequences:  # one sample per exam, carrying its first sequence's text
            first_per_exam: dict[int, tuple[int, str, str]] = {}
            for item in texts:
                first_per_exam.setdefault(item[0], item)
            texts = list(first_per_exam.values())
        self.pairs = [self._pair(sample_id, manifest, splits[i], i, s, t)
                      for sample_id, (i, s, t) in enumerate(texts)]
        self.keep_evaluation_similarity()
        self.clinical_truth = self.load_clinical_truth()
        self.digests.save()
        self.added_tokens: list[str] = []
        input_ids, attention_mask = self._tokenize()
        for split in ("train", "val", "test"):
            chosen = [p for p in self.pairs if p.split == split]
            self.datasets[split] = PairDataset(chosen, self.cache, input_ids, attention_mask,
                                               self.augment if split == "train" else None,
                                               with_mask=self.needs.require_mask)

    def keep_evaluation_similarity(self) -> None:
        """Under ``per_batch``, S over the validation and test reports as a small table in
        memory (when it fits :data:`EVALUATION_TABLE_MAX_MB`, and the dense budget):
        retrieval metrics read it every validation instead of recomputing it."""
        table = self.similarity_table
        if isinstance(table, PerBatchSimilarity):
            ids = [p.report_id for p in self.pairs if p.split in ("val", "test")]
            table.keep_table_for(np.asarray(ids, np.int64), min(
                EVALUATION_TABLE_MAX_MB, self.similarity_sizing.dense_max_mb))

    def load_clinical_truth(self) -> ClinicalTruth | None:
        """The truth class of every pair (index = ``sample_id``) and those of the pairs
        carrying each report id, mirrored texts included (:func:`truth_classes`); None
        without a truth file, or when it names none of the pairs."""
        path = self.truth_path or self.manifest_path.parent / TRUTH_FILE
        if self.truth_path is None and not path.is_file():
            return None
        truths = {(exam, sequence.lower()): t for (exam, sequence), t in load_truth(path).items()}
        found = [truths.get((p.exam_id, self.sequences[p.sequence_index])) for p in self.pairs]
        known = sum(t is not None for t in found)
        if known < len(found):
            rank_zero_warn(f"{path}: {len(found) - known} of {len(found)} pairs have no truth "
                           "line" + ("; no clinical retrieval metrics" if not known else
                                     "; their clinical hits are their own report's only"))
        if not known:
            return None
        pair_classes, report_classes = truth_classes(
            [t.key if t is not None else None for t in found], [p.report_id for p in self.pairs],
            [p.mirrored_report_id for p in self.pairs] if self.augment.flips else None,
            len(self.report_table))
        return clinical_truth(pair_classes, report_classes)

    # -- report tokens ------------------------------------------------------------------
    def _tokenize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, L) ``input_ids`` and ``attention_mask`` of every report text, and the share
        of them the tokenizer does not know (:attr:`unknown_tokens`)."""
        tokenizer = load_tokenizer(self.text_model, self.added_tokens)
        self.unknown_tokens: UnknownTokens = unknown_tokens(self.report_table.texts, tokenizer)
        return tokenize(self.report_table.texts, tokenizer, self.max_length)

    def training_unknown_characters(self) -> list[str]:
        """The characters of the training pairs' texts (mirrored ones included) that the
        tokenizer maps to [UNK], sorted: the same list on every rank."""
        ids = {i for p in self.pairs if p.split == "train"
               for i in (p.report_id, p.mirrored_report_id)}
        texts = [self.report_table.texts[i] for i in sorted(ids)]
        return sorted(unknown_tokens(texts, load_tokenizer(self.text_model)).characters)

    def add_tokens(self, tokens: list[str]) -> None:
        """Tokenise every report again with ``tokens`` added to the vocabulary (after the
        tokenizer's own, in this order), as the text encoder's embeddings expect."""
        if list(tokens) == self.added_tokens:
            return
        self.added_tokens = list(tokens)
        input_ids, attention_mask = self._tokenize()
        for dataset in self.datasets.values():
            dataset.input_ids, dataset.attention_mask = input_ids, attention_mask

    def unknown_tokens_message(self) -> str | None:
        """What to do when more than ``UNKNOWN_TOKEN_WARN_SHARE`` of the report tokens are
        [UNK] (``selip prepare`` prints it), else None."""
        if self.unknown_tokens.share <= UNKNOWN_TOKEN_WARN_SHARE:
            return None
        return self.unknown_tokens.message()

    def warn_unknown_tokens(self) -> None:
        """Warn once per run when many report tokens are [UNK] (pretraining calls this
        after adding any tokens of ``text_encoder.add_unknown_tokens``)."""
        message = self.unknown_tokens_message()
        if message:
            rank_zero_warn(message, category=UnknownTokensWarning)

    @property
    def image_channels(self) -> int:
        """Channels of every sample's image: the stacked sequences, else 1."""
        return len(self.sequences) if self.stack_sequences else 1

    def _pair(self, sample_id: int, manifest: Manifest, split: str, exam_index: int,
              sequence: str, text: str) -> Pair:
        exam = manifest.exams[exam_index]
        volumes = ([exam.volumes[s] for s in self.sequences] if self.stack_sequences
                   else [exam.volumes[sequence]])
        report_id = self.report_table.id_of(text)
        mirrored = (self.report_table.id_of(swap_laterality(text)) if self.augment.flips
                    else report_id)
        mask_key = (self.cache.key(self.digests.digest(exam.mask), "mask")
                    if exam.mask is not None else None)
        return Pair(
            sample_id=sample_id, exam_id=exam.exam_id, split=split,
            sequence_index=self.sequences.index(sequence), volumes=tuple(volumes),
            volume_keys=tuple(self.cache.key(self.digests.digest(v), "image") for v in volumes),
            report_id=report_id, mirrored_report_id=mirrored,
            label=self.classes.index(exam.label) if exam.label is not None else None,
            mask=exam.mask, mask_key=mask_key,
        )

    # -- loaders ------------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError("call setup() before asking for a dataloader")
        dataset = self.datasets[split]
        batch_size = self.batch_size if train else self.eval_batch_size
        if train and len(dataset) < batch_size:
            raise ValueError(f"the train split has {len(dataset)} pairs, fewer than "
                             f"batch_size={batch_size}; lower data.batch_size or add exams")
        loader = partial(DataLoader, dataset, batch_size=batch_size,
                         num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                         worker_init_fn=ignore_stop_signals if self.num_workers > 0 else None,
                         pin_memory=self.pin_memory and torch.cuda.is_available())
        if not train:  # Lightning adds a DistributedSampler for evaluation under DDP
            return loader(shuffle=False)
        return loader(sampler=self.train_sampler(dataset), drop_last=True)

    def train_sampler(self, dataset: PairDataset) -> ResumableSampler:
        """Seeded, split across the trainer's ranks, and resumable mid-epoch."""
        weights = None
        if self.class_balanced and dataset.with_label:
            labels = torch.tensor([p.label for p in dataset.pairs])
            weights = (1.0 / torch.bincount(labels).double()[labels]).tolist()
        trainer = self.trainer
        seed = self.shuffle_seed if self.shuffle_seed is not None else int(
            os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = ResumableSampler(
            len(dataset), self.batch_size,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            seed=seed, weights=weights,
            progress=self._fit_progress if trainer is not None else None,
            positions=True)
        dataset.order_seed = seed  # the workers' draws follow the order's seed and positions
        dataset.batch_similarity = self._batch_similarity(dataset, sampler)
        return sampler

    def _batch_similarity(self, dataset: PairDataset, sampler: ResumableSampler
                          ) -> BatchSimilarity | None:
        """Under ``per_batch``: what the workers need to score each batch (issue 17)."""
        table = self.similarity_table
        if not isinstance(table, PerBatchSimilarity):
            return None
        return BatchSimilarity(
            table, np.array([p.report_id for p in dataset.pairs], np.int64),
            np.array([p.mirrored_report_id for p in dataset.pairs], np.int64),
            seed=sampler.seed, length=len(dataset), total_size=sampler.total_size,
            world_size=sampler.num_replicas, batch_size=self.batch_size,
            flipped=dataset.flipped, weights=sampler.weights)

    def _fit_progress(self) -> tuple[int, int]:
        """(epoch, batches of it already trained) from the trainer's loops — restored from
        the checkpoint when resuming, (e, 0) at the start of every epoch otherwise."""
        assert self.trainer is not None
        loop = self.trainer.fit_loop
        # ``processed`` is what Lightning's own set_epoch uses (the trackers are typed as
        # their base class, which lacks it).
        epoch: Any = loop.epoch_progress.current
        batches: Any = loop.epoch_loop.batch_progress.current
        return int(epoch.processed), int(batches.processed)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int
                                ) -> dict[str, torch.Tensor]:
        """Images arrive as float16 (or already cast to a "-true" precision's dtype: Lightning
        casts the batch before the transfer) and leave in :meth:`input_dtype`, on the
        device; training batches also get the affine, gamma and intensity augmentation,
        batched (the flip happened in the workers), drawn from :meth:`augment_generator`."""
        image = batch["image"]
        if self.trainer is not None and self.trainer.training and self.augment.enabled \
                and self.augment_on_device():
            # In float32 whatever the model computes in, then cast: in bfloat16 (8
            # significant bits) a 5° rotation's cosine is one step below 1 and the sampling
            # grid's coordinates near the edges are resolved to a quarter voxel at 128
            # voxels; a float32 copy of the batch is small next to the activations.
            image, mask = augment_batch(image.float(), batch.get("mask"), self.augment,
                                        self.preprocess.spacing,
                                        self.augment_generator(image.device))
            if mask is not None:
                batch["mask"] = mask
        batch["image"] = image.to(self.input_dtype())
        return batch

    def input_dtype(self) -> torch.dtype:
        """The dtype the model takes its images in: the module's under the "-true"
        precisions (bfloat16, float16, float64), float32 under 32 and the mixed ones
        (autocast casts per operation) and without a trainer.

        Asked of the trainer's precision plugin, which casts every floating input to it
        before the transfer (a no-op when mixed): the float16 the loader ships in must not
        reach a float32 model, nor float32 a bfloat16 one.
        """
        plugin = getattr(self.trainer, "precision_plugin", None)
        if plugin is None:
            return torch.float32
        return plugin.convert_input(torch.empty(0, dtype=torch.float32)).dtype

    def augment_generator(self, device: torch.device) -> torch.Generator | None:
        """The generator of this training batch's batched augmentation, on ``device``,
        seeded from (:meth:`augment_seed`, global rank, epoch, batch of the epoch).

        Not the global generator: LightningCLI seeds every rank alike, so sample j of the
        batch would get the same affine, gamma and intensity draw on every rank. Epoch and
        batch are the loop counters the training order resumes from (restored from the
        checkpoint), so a resumed run draws what the first run drew at that batch; not
        ``global_step``, which stays put across the batches of a gradient accumulation.
        None (the global generator) without a fit loop.
        """
        trainer = self.trainer
        if getattr(trainer, "fit_loop", None) is None:
            return None
        assert trainer is not None
        epoch, batch = self._fit_progress()
        return step_generator((self.augment_seed(), trainer.global_rank, epoch, batch), device)

    def augment_seed(self) -> int:
        """The seed of the training order (``shuffle_seed``, else the run's
        ``seed_everything``, else 0): one seed fixes both what a batch holds and how it is
        augmented."""
        if self.shuffle_seed is not None:
            return self.shuffle_seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def augment_on_device(self) -> bool:
        """Affine/gamma/intensity batched on the accelerator after the transfer; on a CPU
        run instead per sample in the loader workers, which run in parallel with the step
        rather than before it."""
        accelerator = getattr(self.trainer, "accelerator", None)
        return self.trainer is not None and not isinstance(accelerator, CPUAccelerator)

    def train_dataloader(self) -> DataLoader:
        if "train" in self.datasets:
            self.datasets["train"].augment_fully = not self.augment_on_device()
            # the workers mix the rank into their draws' seed (PairDataset.generator)
            self.datasets["train"].rank = self.trainer.global_rank if self.trainer else 0
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, train=False)
