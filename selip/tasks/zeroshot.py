"""``ZeroShotTask``: classify images by their similarity to class prompts (docs/design.md §6).

Each class has several prompts written in the report grammar; their text embeddings are
averaged (then re-normalised) into one class vector, and an image is scored against the
class vectors with the pretrained logit scale. No training: ``selip test`` only.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from selip.inference.loading import InferenceError, read_trained_model
from selip.io.checkpoints import CheckpointError
from selip.models.scoring import class_prototypes, scaled_similarity
from selip.tasks.base import BaseTask
from selip.tasks.channels import SequenceIndex, require_single_channel
from selip.tasks.classify import classification_metrics
from selip.tasks.compatibility import warn_if_scaling_differs
from selip.text.tokenizer import tokenize


class ZeroShotTask(BaseTask):
    """Zero-shot classification from a pretraining checkpoint.

    ``selip test --config configs/zeroshot.yaml --ckpt_path CKPT`` passes ``CKPT`` here
    (``ckpt_path_argument``): the checkpoint is a pretraining one, not this task's.

    Args:
        pretrain_ckpt: the SeLIP pretraining checkpoint or ``selip export`` folder (or
            ``--ckpt_path``), read like every trained model (``read_trained_model``).
        prompts: class name → prompt texts, e.g. ``{"normal": ["No abnormality
            detected."], "tumour": ["left frontal lobe: hyperintense signal with
            surrounding oedema", …]}``; every class of the data needs prompts.
        max_length: prompt length in tokens.
    """

    ckpt_path_argument: ClassVar[str] = "pretrain_ckpt"

    def __init__(self, pretrain_ckpt: str | None = None,
                 prompts: dict[str, list[str]] | None = None, max_length: int = 64) -> None:
        super().__init__()
        if not pretrain_ckpt:
            raise ValueError("zero-shot needs a SeLIP pretraining checkpoint: --ckpt_path CKPT "
                             "(or model.init_args.pretrain_ckpt)")
        if not prompts or any(not texts for texts in prompts.values()):
            raise ValueError("prompts must give at least one prompt text for every class")
        self.save_hyperparameters()
        try:
            self.trained = read_trained_model(pretrain_ckpt)
        except InferenceError as err:
            raise CheckpointError(str(err)) from None
        self.model = self.trained.model
        settings = self.trained.settings
        self.sequence_index = SequenceIndex(settings.sequences, settings.sequence_embedding)
        self.pretrained_intensity: str | None = self.trained.intensity
        self.class_embeddings: torch.Tensor | None = None

    def setup_for_data(self, stage: str) -> None:
        require_single_channel(self.data, "zero-shot classification")
        warn_if_scaling_differs(self.pretrained_intensity, self.data, self.hparams["pretrain_ckpt"])
        self.sequence_index.check(self.data.sequences or None)  # unseen sequences: fail early
        classes = list(self.data.classes)
        missing = [c for c in classes if c not in self.hparams["prompts"]]
        if missing:
            raise ValueError(f"no prompts for class(es) {', '.join(missing)}; model.init_args."
                             f"prompts has {', '.join(self.hparams['prompts'])}")
        self.classes = classes
        self.test_metrics = classification_metrics(len(classes), "test/")

    @torch.no_grad()
    def on_test_epoch_start(self) -> None:
        tokenizer = self.trained.tokenizer()
        embedded = []
        for name in self.classes:
            ids, mask = tokenize(list(self.hparams["prompts"][name]), tokenizer,
                                 self.hparams["max_length"])
            embedded.append(self.model.encode_text(ids.to(self.device), mask.to(self.device)))
        self.class_embeddings = class_prototypes(embedded)  # (C, E)

    def evaluate_batch(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int
                       ) -> None:
        assert self.class_embeddings is not None
        image = self.model.encode_image(
            batch["image"], self.sequence_index(batch["sequence"], self.data.sequences or None))
        logits = scaled_similarity(image, self.class_embeddings, self.model.logit_scale())
        self.test_metrics.update(logits.softmax(-1), batch["label"])

    def finish_evaluation(self, stage: str) -> None:
        metrics = self.log_metrics(self.test_metrics)
        if self.trainer.is_global_zero:
            print("zero-shot test metrics: " + ", ".join(
                f"{k.removeprefix('test/')} {float(v):.3f}" for k, v in metrics.items()))
