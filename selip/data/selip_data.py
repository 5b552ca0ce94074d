"""``SelipData``: the ``data`` section of a selip config, and the cohort it names, without
Lightning. ``selip prepare`` and ``selip similarity`` build it from a config (a SLURM array
of prepare tasks does not import Lightning); :class:`selip.data.datamodule.SelipDataModule`
is the same with Lightning's loaders and device hooks on top, which every task trains on.
"""

from __future__ import annotations

from pathlib import Path

from lightning_utilities.core.rank_zero import rank_zero_warn

from selip.data.augment import AugmentSettings
from selip.data.cohort import Cohort, CohortSettings, PreparedCohort, default_cache_dir
from selip.data.dataset import PairDataset, TrainingOrder
from selip.data.defaults import TEXT_INPUT
from selip.data.description import DataDescription, train_report_counts
from selip.data.intensity import IntensityScheme
from selip.data.preprocess import PreprocessSettings
from selip.data.report_table import ReportTable
from selip.data.report_tokens import ReportTokens, training_unknown_characters
from selip.data.validation import Requirements
from selip.similarity.settings import SimilaritySettings, similarity_settings
from selip.text.reports import NORMAL_REPORT_TEXT
from selip.text.tokenizer import UnknownTokensWarning

#: The similarity block of a config that names none.
DEFAULT_SIMILARITY = SimilaritySettings(TEXT_INPUT.similarity)


class SelipData:
    """Image–report pairs from a manifest, preprocessed through an on-disk cache: the
    settings, the prepared cohort and its datasets (no loaders: see ``SelipDataModule``).

    Args:
        manifest: CSV or JSONL manifest, one row per exam (see docs/data.md).
        cache_dir: preprocessed-volume cache (default ``$SELIP_CACHE_DIR`` or
            ``~/.cache/selip``).
        sequences: sequence columns to pair (default: every sequence column).
        spacing: target voxel size in mm, (D, H, W) = (S–I, A–P, L–R) order.
        shape: target array shape, (D, H, W) order.
        intensity: per-volume scaling: ``median`` (divide by twice the head's median; a
            lesion stays brighter than tissue) or ``percentile`` (the paper's clip at
            ``intensity_percentiles`` and [0, 1] rescale: a bright lesion is the white point).
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
        text_model: the tokenizer's Hugging Face folder or name (default: packaged MiniLM).
        max_length: maximum report length in tokens.
        normal_report_text: the text of a normal report (paired with every sequence).
        augment: training augmentation (None: the defaults).
        require_label: the task needs a label on every exam.
        require_mask: the task needs a mask on every exam.
        label_fraction: use only this share of the training exams (stratified by label,
            seeded by ``label_seed``), for data-efficiency curves; val and test stay whole.
        class_balanced: sample training pairs with weights 1 / (pairs of their class).
        shuffle_seed: seed of the training order (default: ``seed_everything``, else 0);
            epoch e's order depends only on it and e, so a resumed run continues it exactly.
        label_seed: seed of the ``label_fraction`` draw (default: ``split_seed``).
        predict_split: the split ``selip predict`` runs on (``train``, ``val``, ``test``).
        stack_sequences: one sample per exam, its sequences stacked as channels in
            ``sequences`` order (downstream); off: one per (exam, sequence) pair (pretraining).
        similarity: the report-similarity block (:class:`SimilaritySettings`: preset,
            mode, top_k, size limits), or a preset name (``english``, ``paper``) as short
            for ``{preset: NAME}``; None: no table (tasks that do not use S).
        check_files: open every file during ``prepare_data`` to report bad volumes up front.
        progress: show progress bars.
        truth: what each pair shows (``truth.jsonl``, as ``selip demo-data`` writes) for
            clinical R@K; None: the one beside the manifest if any (real archives: none).
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
        if predict_split not in ("train", "val", "test"):
            raise ValueError(f"predict_split must be train, val or test, got {predict_split!r}")
        self.manifest_path = Path(manifest).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.preprocess = PreprocessSettings(tuple(spacing), tuple(shape),  # type: ignore[arg-type]
                                             tuple(intensity_percentiles),  # type: ignore[arg-type]
                                             first_volume_of_4d, intensity)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.text_model, self.max_length = text_model, max_length
        self.augment = augment or AugmentSettings()
        self.stack_sequences, self.class_balanced = stack_sequences, class_balanced
        self.shuffle_seed, self.predict_split, self.progress = shuffle_seed, predict_split, progress
        self.source = Cohort(CohortSettings(
            self.manifest_path, self.cache_dir, self.preprocess,
            Requirements(tuple(s.lower() for s in sequences) if sequences else None,
                         require_label, require_mask, stack_sequences),
            val_fraction, test_fraction, split_seed, label_fraction, label_seed,
            normal_report_text, self.augment.flips, similarity_settings(similarity),
            Path(truth).expanduser() if truth else None, check_files, progress,
            max(1, num_workers)))
        self.cache, self.needs = self.source.cache, self.source.settings.needs
        self.similarity = self.source.similarity_rule  # the resolved rule, None without S
        self._adopt(PreparedCohort([], [], [], ReportTable([]), None, None))
        self.tokens: ReportTokens | None = None
        self.datasets: dict[str, PairDataset] = {}

    # -- the cohort, as the tasks see it ---------------------------------------------------
    def prepare_data(self) -> None:
        """Validate the manifest and every file it names, and build S (one process per
        node; the others load S in ``setup``)."""
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Pairs, splits, the report table, S and the report tokens (once)."""
        if self.datasets:
            return
        self._adopt(self.source.load())
        self.tokens = ReportTokens.of(self.report_table.texts, self.text_model, self.max_length)
        self.datasets = self._datasets()

    def _adopt(self, cohort: PreparedCohort) -> None:
        """Expose the prepared cohort's fields as the datamodule's own (read-only use)."""
        self.cohort, self.pairs, self.sequences = cohort, cohort.pairs, cohort.sequences
        self.classes, self.report_table = cohort.classes, cohort.report_table
        self.similarity_table, self.clinical_truth = cohort.similarity, cohort.clinical_truth

    @property
    def image_channels(self) -> int:
        """Channels of every sample's image: the stacked sequences, else 1."""
        return len(self.sequences) if self.stack_sequences else 1

    def describe(self) -> DataDescription:
        """What the tasks may know about this data (after ``setup``), as plain data: the
        one object a task reads (:class:`selip.tasks.BaseTask` takes it in its ``setup``)."""
        block = self.source.settings.similarity
        budget = block.device_budget_mb if block is not None else 0.0
        return DataDescription(
            sequences=list(self.sequences), classes=list(self.classes),
            image_channels=self.image_channels, report_texts=self.report_table.texts,
            train_report_counts=train_report_counts(self.pairs, len(self.report_table)),
            similarity=self.similarity_table, similarity_device_budget_mb=budget,
            clinical_truth=self.clinical_truth, manifest=self.manifest_path, pairs=self.pairs,
            preprocess=self.preprocess, unknown_characters=(
                self.training_unknown_characters() if self.tokens is not None
                and self.tokens.unknown.characters else []))

    # -- report tokens (the task's text encoder may add some) -----------------------------
    def training_unknown_characters(self) -> list[str]:
        """The training texts' characters the tokenizer maps to [UNK] (every rank alike)."""
        return training_unknown_characters(self.cohort, self.text_model)

    def add_tokens(self, tokens: list[str]) -> None:
        """Tokenise every report again with ``tokens`` added to the vocabulary (after the
        tokenizer's own, in this order), as the text encoder's embeddings expect."""
        assert self.tokens is not None, "call setup() first"
        if tuple(tokens) != self.tokens.added_tokens:
            self.tokens = ReportTokens.of(self.report_table.texts, self.text_model,
                                          self.max_length, tokens)
            self.datasets = self._datasets()

    def warn_unknown_tokens(self) -> None:
        """Warn once per run when many report tokens are [UNK]."""
        message = self.tokens.warning() if self.tokens is not None else None
        if message:
            rank_zero_warn(message, category=UnknownTokensWarning)

    # -- datasets (SelipDataModule adds the loaders) ---------------------------------------
    def _datasets(self, order: TrainingOrder | None = None) -> dict[str, PairDataset]:
        """The three splits' datasets; the training one draws as ``order`` says."""
        assert self.tokens is not None
        return {split: PairDataset(
            self.cohort.split(split), self.cache, self.tokens.input_ids,
            self.tokens.attention_mask, self.augment if split == "train" else None,
            with_mask=self.needs.require_mask, order=order if split == "train" else None)
            for split in ("train", "val", "test")}
