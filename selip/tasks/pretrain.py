"""``PretrainTask``: SeLIP contrastive pretraining (docs/design.md §2–6).

The module only orchestrates: the math lives in :mod:`selip.losses` (pure functions),
the similarity lookup in :mod:`selip.similarity.table`, the retrieval metrics in
:mod:`selip.metrics`, the figures in :mod:`selip.tasks.visuals`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch

from selip.data.description import Vocabulary
from selip.distributed import gather_no_grad, gather_with_grad, world
from selip.io.atomic import atomic_open
from selip.io.checkpoints import add_reproducibility_record
from selip.losses import LossParts, positives_from_ids, selip_loss_local, soft_targets
from selip.metrics import (
    RetrievalResult,
    retrieval_metrics,
    write_retrieval_outputs,
)
from selip.models import ImageEncoderConfig, SelipModel, TextEncoderConfig
from selip.models.selip_model import DUAL_ENCODER
from selip.profiling import SectionTimer
from selip.similarity.lookup import SimilarityLookup
from selip.tasks.base import BaseTask, data_vocabulary
from selip.tasks.channels import (
    SequenceIndex,
    pretraining_sequences,
    require_single_channel,
)
from selip.tasks.compatibility import (
    check_recorded_norm,
    recorded_intensity,
    warn_if_scaling_differs,
)
from selip.tasks.schedule import resolve_warmup, warmup_then_decay
from selip.tasks.visuals import log_validation_figures


def _config(value: Any, kind: type) -> Any:
    # Checkpoints store the encoder settings as plain dicts (weights_only-safe).
    if value is None:
        return kind()
    if not isinstance(value, Mapping):
        return value
    return kind.from_record(value) if hasattr(kind, "from_record") else kind(**value)


class PretrainTask(BaseTask):
    """SeLIP pretraining; ``kl_weight=0`` is the plain CLIP baseline.

    Args:
        image_encoder: the 3D ResNet (default: ResNet-50, width 64, anisotropic stem).
        text_encoder: the Hugging Face encoder (default: the packaged MiniLM, CLS pooling).
        embed_dim: shared embedding size.
        temperature: initial temperature of the logits (scale 1/0.07).
        max_logit_scale: the scale is clamped at this value.
        learn_logit_scale: learn the scale (False freezes it, as the authors' code did).
        sequence_embedding: add a learned per-sequence vector on the image side.
        max_sequences: size of that embedding table.
        kl_weight: λ, the weight of the soft-target KL term (0 = CLIP).
        soft_target_eps: ε, the clamp of Q and of both softmaxes.
        soft_target_norm: ``linear`` (S / rowsum, the authors) or ``softmax`` (S / τ).
        soft_target_temperature: τ of the softmax normalisation.
        include_diagonal: keep each sample's own pair in its soft targets.
        symmetric_kl: use ½[KL(Q‖p) + KL(p‖Q)].
        lr_image: learning rate of the image encoder.
        lr_text: learning rate of the text encoder (pretrained: usually much lower).
        lr_head: learning rate of both projections and the logit scale, which start from
            scratch even when the text encoder is pretrained (default: ``lr_image``).
        weight_decay: AdamW weight decay (not applied to biases, norms or the scale).
        warmup: warmup length, a fraction of all steps when below 1, else steps.
        schedule: ``cosine``, ``poly`` or ``constant`` after warmup.
        min_lr_ratio: final learning rate as a fraction of the peak.
        semantic_threshold: S ≥ this counts as a semantic hit in retrieval.
        figures_every_n_val_epochs: log similarity images, input slices and the embedding
            projector every N validation epochs (0: never).
        log_report_texts: put report texts in the projector metadata (off: patient data).
    """

    def __init__(
        self,
        image_encoder: ImageEncoderConfig | None = None,
        text_encoder: TextEncoderConfig | None = None,
        embed_dim: int = DUAL_ENCODER.embed_dim,
        temperature: float = DUAL_ENCODER.temperature,
        max_logit_scale: float = DUAL_ENCODER.max_logit_scale,
        learn_logit_scale: bool = DUAL_ENCODER.learn_logit_scale,
        sequence_embedding: bool = DUAL_ENCODER.sequence_embedding,
        max_sequences: int = DUAL_ENCODER.max_sequences,
        kl_weight: float = 1.0,
        soft_target_eps: float = 1e-3,
        soft_target_norm: Literal["linear", "softmax"] = "linear",
        soft_target_temperature: float = 0.1,
        include_diagonal: bool = True,
        symmetric_kl: bool = False,
        lr_image: float = 1e-4,
        lr_text: float = 1e-5,
        lr_head: float | None = None,
        weight_decay: float = 0.05,
        warmup: float = 0.05,
        schedule: Literal["cosine", "poly", "constant"] = "cosine",
        min_lr_ratio: float = 0.0,
        semantic_threshold: float = 0.5,
        figures_every_n_val_epochs: int = 5,
        log_report_texts: bool = False,
    ) -> None:
        super().__init__()
        image_config = _config(image_encoder, ImageEncoderConfig)
        text_config = _config(text_encoder, TextEncoderConfig)
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.save_hyperparameters(ignore=["image_encoder", "text_encoder"])
        self.record_config("image_encoder", image_config)
        self.record_config("text_encoder", text_config)
        self.model = SelipModel(image_config, text_config, embed_dim, temperature,
                                max_logit_scale, learn_logit_scale, max_sequences,
                                sequence_embedding)
        self.run_config: str | None = None  # the resolved CLI config, set by selip's CLI
        self._val_outputs: list[dict[str, torch.Tensor]] = []
        self._figure_batch: dict[str, torch.Tensor] | None = None
        self._skipped_steps = 0
        # Times the similarity lookup and the loss of each step when enabled (off: free).
        self.step_timer = SectionTimer(enabled=False)
        # The sequence embedding's name → index map: the datamodule's numbering in a fresh
        # run, the checkpoint's once one is loaded (resumed, tested, zero-shot).
        self.sequence_index = SequenceIndex(enabled=sequence_embedding)

    # -- data-dependent pieces -----------------------------------------------------------
    @property
    def similarity_table(self) -> SimilarityLookup | None:
        """S over the data's report texts (dense, top-k or per batch), None without
        similarity."""
        return self.data.similarity

    def setup_for_data(self, stage: str) -> None:
        require_single_channel(self.data, "pretraining")
        vocabulary = data_vocabulary(self._trainer)
        if vocabulary is not None:
            self._align_vocabulary(vocabulary, stage)

    def _align_vocabulary(self, vocabulary: Vocabulary, stage: str) -> None:
        """Tokens and embeddings agree: with ``text_encoder.add_unknown_tokens`` a new run
        adds the training texts' unknown characters to both (recorded in the
        hyper-parameters, so a resumed or tested checkpoint rebuilds the same vocabulary);
        then warn if many report tokens are still [UNK]."""
        text = self.model.text_encoder
        if text.config.add_unknown_tokens and not text.added_tokens and stage == "fit":
            tokens = list(self.data.unknown_characters)
            text.add_tokens(tokens)
            self.hparams["text_encoder"]["added_tokens"] = tokens
        vocabulary.add_tokens(text.added_tokens)
        vocabulary.warn_unknown_tokens()

    def on_fit_start(self) -> None:
        if self.hparams["kl_weight"] > 0 and self.similarity_table is None:
            raise ValueError("kl_weight > 0 needs the report-similarity table: set "
                             "data.similarity (e.g. 'paper' or 'english'), or set "
                             "model.init_args.kl_weight 0 for the CLIP baseline")
        if self.similarity_table is not None:
            self.similarity_table.place(
                self.device, int(self.data.similarity_device_budget_mb * 2**20))
            self.similarity_table.start_fit()

    # -- the loss ------------------------------------------------------------------------
    def _forward_loss(self, batch: dict[str, torch.Tensor]
                      ) -> tuple[LossParts, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Local rows against the gathered batch (docs/design.md §5).

        Returns the loss parts, this rank's image/text embeddings (b, E) and its (b, N)
        image→text logits.
        """
        hp = self.hparams
        image = self.model.encode_image(
            batch["image"], self.sequence_index(batch["sequence"], self.data.sequences or None))
        text = self.model.encode_text(batch["input_ids"], batch["attention_mask"])
        rank, _ = world()
        all_image, all_text = gather_with_grad(image), gather_with_grad(text)
        ids, all_ids = batch["report_id"], gather_no_grad(batch["report_id"])
        scale = self.model.logit_scale()
        image_logits = scale * image @ all_text.T
        text_logits = scale * text @ all_image.T
        table = self.similarity_table
        if hp["kl_weight"] > 0 and table is not None:
            with self.step_timer.section("lookup"):
                similarity = table.batch_rows(batch, ids, all_ids)
        else:
            similarity = torch.zeros_like(image_logits)
        with self.step_timer.section("loss"):
            parts = selip_loss_local(
                image_logits.float(), text_logits.float(), similarity,
                positives_from_ids(ids, all_ids), row_offset=rank * ids.shape[0],
                kl_weight=hp["kl_weight"], eps=hp["soft_target_eps"],
                norm=hp["soft_target_norm"], temperature=hp["soft_target_temperature"],
                include_diagonal=hp["include_diagonal"], symmetric_kl=hp["symmetric_kl"])
        return parts, image, text, image_logits

    def _log_parts(self, stage: str, parts: LossParts, batch_size: int) -> None:
        on_step = stage == "train"
        values = {f"{stage}/loss": parts.total, f"{stage}/loss_ce": parts.ce,
                  f"{stage}/loss_kl": parts.kl}
        if stage == "train":
            values["train/logit_scale"] = self.model.logit_scale().detach()
            values["train/soft_target_entropy"] = parts.soft_target_entropy
        self.log_dict(values, on_step=on_step, on_epoch=not on_step, batch_size=batch_size,
                      sync_dist=not on_step, prog_bar=False)
        if stage == "train":
            self.log("loss", parts.total, prog_bar=True, logger=False, batch_size=batch_size)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        parts, _, _, _ = self._forward_loss(batch)
        self._log_parts("train", parts, batch["image"].shape[0])
        return parts.total

    # -- validation: loss per batch, retrieval over the whole split ---------------------------
    def _evaluate_batch(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log the batch loss and keep its embeddings; returns its (b, N) logits."""
        parts, image, text, logits = self._forward_loss(batch)
        self._log_parts(stage, parts, batch["image"].shape[0])
        kept = ("report_id", "sample_id", "sequence", "label")
        keep: dict[str, torch.Tensor] = {k: batch[k] for k in kept if k in batch}
        self._val_outputs.append({"image_emb": image.float(), "text_emb": text.float(), **keep})
        return logits

    def _retrieval(self, stage: str) -> tuple[RetrievalResult, dict[str, torch.Tensor]]:
        """Retrieval over the whole split, gathered from every rank (duplicates removed).

        Logs every figure of :func:`retrieval_metrics` under ``{stage}/``: beside the
        model's, ``chance_*`` and (from the datamodule's training pairs) ``prior_i2t_*``;
        ``*_clinical_R@K`` where the datamodule knows what each pair shows (the demo's
        ``truth.jsonl``), none otherwise.
        """
        merged = {k: torch.cat([o[k] for o in self._val_outputs]) for k in self._val_outputs[0]}
        gathered = {k: gather_no_grad(v) for k, v in merged.items()}
        table = self.similarity_table
        result = retrieval_metrics(
            gathered["image_emb"], gathered["text_emb"], gathered["report_id"],
            gathered["sample_id"], similarity=table.lookup if table is not None else None,
            semantic_threshold=self.hparams["semantic_threshold"],
            train_counts=self.data.train_report_counts, truth=self.data.clinical_truth)
        metrics = {f"{stage}/{k}": float(v) for k, v in result.metrics.items()
                   if not k.startswith("num_")}
        self.log_dict(metrics, sync_dist=False, rank_zero_only=False)
        return result, gathered

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []
        self._figure_batch = None

    def on_test_epoch_start(self) -> None:
        self._val_outputs = []

    def evaluate_batch(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int
                       ) -> None:
        logits = self._evaluate_batch(stage, batch)
        if stage == "val" and batch_idx == 0:
            self._figure_batch = {"logits": logits.detach().float(),
                                  "image": batch["image"][:4].detach().float(),
                                  "sequence": batch["sequence"][:4],
                                  "report_id": batch["report_id"]}  # all: similarity panel

    def finish_evaluation(self, stage: str) -> None:
        if stage == "test":
            self._finish_test()
            return
        if not self._val_outputs or self.trainer.sanity_checking:
            return
        result, gathered = self._retrieval("val")
        self.log("val_R5", result.metrics["i2t_R@5"], prog_bar=True, logger=False)
        every = self.hparams["figures_every_n_val_epochs"]
        if every > 0 and self.trainer.is_global_zero and self._figure_batch is not None and \
                self.current_epoch % every == 0:
            self._log_figures(gathered)

    def _log_figures(self, gathered: dict[str, torch.Tensor]) -> None:
        batch = self._figure_batch
        assert batch is not None
        table = self.similarity_table
        ids = batch["report_id"]
        similarity = table.lookup(ids) if table is not None else torch.eye(len(ids))
        targets = soft_targets(similarity.to(batch["logits"].device),
                               self.hparams["soft_target_norm"],
                               self.hparams["soft_target_temperature"],
                               self.hparams["include_diagonal"])
        log_validation_figures(
            self.logger, self.global_step, predicted=batch["logits"][:, : len(ids)].softmax(-1),
            target=targets, volumes=batch["image"], embeddings=gathered,
            sequence_names=self.data.sequences, class_names=self.data.classes,
            report_texts=self.data.report_texts if self.hparams["log_report_texts"] else None,
            volume_sequences=batch["sequence"],
            volume_report_ids=ids[: len(batch["image"])])  # the slices: first few only

    # -- test: retrieval on the test split, written to the run folder ---------------------
    def _finish_test(self) -> None:
        if not self._val_outputs:
            return
        result, _ = self._retrieval("test")
        if not self.trainer.is_global_zero:
            return
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "test_retrieval"
        written = write_retrieval_outputs(result, folder, prefix="retrieval")
        if self.hparams["log_report_texts"]:  # opt-in only: report texts are patient data
            texts = self.data.report_texts
            path = folder / "report_texts.csv"
            with atomic_open(path, "w", durable=False) as handle:
                writer = csv.writer(handle)
                writer.writerow(["report_id", "text"])
                writer.writerows(enumerate(texts))
            written.append(path)
        print("test retrieval written to:\n  " + "\n  ".join(str(p) for p in written))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip a step whose gradients are not finite instead of poisoning the weights.

        16-mixed on CUDA has a gradient scaler that does this (and skips its own early
        overflow steps while it calibrates): selip then checks nothing and counts nothing.
        bf16 and 32 have none: all gradients are dropped (AdamW then leaves every weight
        and moment as it was) and ``train/skipped_steps`` counts the skips. The check is
        one device-side reduction and a single host sync per step, not one per tensor.
        """
        plugin = getattr(self._trainer, "precision_plugin", None)  # None: no trainer (tests)
        if getattr(plugin, "scaler", None) is not None:
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not bool(torch.stack([g.isfinite().all() for g in grads]).all()):
            self._skipped_steps += 1
            for parameter in self.parameters():
                parameter.grad = None
        self.log("train/skipped_steps", float(self._skipped_steps), on_step=True, on_epoch=False)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser's step, then the logit scale back under its cap (see
        :meth:`LogitScale.clamp_`)."""
        super().optimizer_step(*args, **kwargs)
        self.model.logit_scale.clamp_()

    # -- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        model = self.model
        towers = ("image", "text", "head")
        groups: dict[str, dict[str, list[torch.nn.Parameter]]] = {
            tower: {"decay": [], "no_decay": []} for tower in towers}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad or name.startswith("logit_scale"):
                continue
            tower = ("head" if "projection" in name.split(".")[0] or
                     name.startswith("sequence_embedding") else
                     "text" if name.startswith("text_encoder") else "image")
            decay = parameter.ndim >= 2 and "norm" not in name.lower()
            groups[tower]["decay" if decay else "no_decay"].append(parameter)
        lr_head = hp["lr_head"] if hp["lr_head"] is not None else hp["lr_image"]
        param_groups = []
        for tower, lr in zip(towers, (hp["lr_image"], hp["lr_text"], lr_head), strict=True):
            for kind, params in groups[tower].items():
                if params:
                    param_groups.append({"params": params, "lr": lr, "name": f"{tower}_{kind}",
                                         "weight_decay": hp["weight_decay"] if kind == "decay"
                                         else 0.0})
        if model.logit_scale.log_scale.requires_grad:
            param_groups.append({"params": [model.logit_scale.log_scale], "lr": lr_head,
                                 "name": "logit_scale", "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(param_groups)
        total = int(self.trainer.estimated_stepping_batches)
        factor = warmup_then_decay(total, resolve_warmup(hp["warmup"], total), hp["schedule"],
                                   hp["min_lr_ratio"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        table = self.similarity_table
        add_reproducibility_record(
            checkpoint, run_config=self.run_config,
            similarity_key=table.key if table is not None else None, manifest=self.data.manifest)
        sequences = self.sequence_index.mapping(self.data.sequences or None)
        if sequences is not None:  # what later runs translate their sequence indices to
            checkpoint["selip"]["sequences"] = sequences
        if self.data.preprocess is not None:  # what selip.load applies to new volumes
            checkpoint["selip"]["preprocess"] = asdict(self.data.preprocess)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's sequence order (a resumed or tested run, zero-shot).

        Raises:
            ValueError: the sequence embedding is on and the order is unknown; the
                checkpoint's image encoder uses another norm than this run builds.
        """
        check_recorded_norm(checkpoint, self.model.image_encoder.config)
        warn_if_scaling_differs(recorded_intensity(checkpoint), self.data, "the checkpoint")
        enabled = self.model.sequence_embedding is not None
        self.sequence_index = SequenceIndex(pretraining_sequences(checkpoint, enabled), enabled)
