"""``PretrainedSelip``: a loaded SeLIP model with the preprocessing it was trained with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from tqdm.auto import tqdm

from selip.data.nifti import VolumeError, checked_volume, load_volume, volume_from_image
from selip.data.preprocess import PreprocessSettings, preprocess_loaded
from selip.models import SelipModel
from selip.models.scoring import class_prototypes, scaled_similarity
from selip.text.tokenizer import tokenize

#: What :meth:`PretrainedSelip.preprocess` takes: a NIfTI path, an open nibabel image,
#: or an (X, Y, Z) array with its (4, 4) affine.
ImageInput = str | Path | nib.Nifti1Image | tuple[np.ndarray, np.ndarray]
#: A progress bar appears when more volumes than this are encoded.
_PROGRESS_FROM = 16


class PretrainedSelip:
    """A SeLIP dual encoder ready to use: preprocessing, tokenizer and weights of one run.

    Built by :func:`selip.load`. Every ``encode_*`` runs without gradients, in eval mode,
    under autocast on CUDA, in batches.

    Args:
        model: the dual encoder (weights loaded).
        tokenizer: its Hugging Face tokenizer (added tokens included).
        preprocess_settings: the run's orientation/spacing/intensity/crop settings.
        max_length: the run's text length in tokens.
        sequences: sequence name → index of a model with a sequence embedding, else None.
        device: where the model runs.
    """

    def __init__(self, model: SelipModel, tokenizer: Any, preprocess_settings: PreprocessSettings,
                 max_length: int, sequences: Mapping[str, int] | None,
                 device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.preprocess_settings = preprocess_settings
        self.max_length = max_length
        self.sequences = dict(sequences) if sequences else None
        self.device = device

    # -- images -------------------------------------------------------------------------------
    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """One volume → (1, D, H, W) float32, exactly as in training: RAS orientation, the
        run's spacing, the run's intensity scaling (recorded in the checkpoint or export),
        crop or pad.

        Raises:
            VolumeError: a missing or unreadable file, a 2D or 4D volume, NaN voxels, a
                constant volume, a bad affine — one line naming the input.
        """
        settings = self.preprocess_settings
        if isinstance(image, (str, Path)):
            name = str(image)
            data, affine = load_volume(image, settings.first_volume_of_4d)
        elif isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            name = "the nibabel image"
            data, affine = volume_from_image(image, name, settings.first_volume_of_4d)
        elif isinstance(image, tuple) and len(image) == 2:
            name = "the (array, affine) input"
            data, affine = checked_volume(np.asarray(image[0]), np.asarray(image[1]), name)
        else:
            raise VolumeError(f"expected a NIfTI path, a nibabel image or (array, affine), "
                              f"got {type(image).__name__}")
        tensor = preprocess_loaded(data, affine, settings, name).data  # (1, X, Y, Z)
        # (1, D, H, W), rounded through float16 as the training cache stores volumes: the
        # same input gives the same embedding here as in training, to the bit.
        return tensor.permute(0, 3, 2, 1).contiguous().half().float()

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageInput] | torch.Tensor, batch_size: int = 8,
                      sequence: str | None = None, progress: bool | None = None
                      ) -> torch.Tensor:
        """Volumes → (N, E) unit embeddings on the CPU.

        Args:
            images: inputs for :meth:`preprocess`, or already preprocessed (N, 1, D, H, W).
            batch_size: volumes per forward pass.
            sequence: the sequence the volumes are (needed by a model with a sequence
                embedding; one of :attr:`sequences`).
            progress: show a progress bar (default: for more than 16 volumes).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(images, (str, Path, nib.Nifti1Image, nib.Nifti2Image)):
            images = [images]  # one volume given bare, not a list of characters
        index = self._sequence_index(sequence)
        count = len(images)
        bar = tqdm(total=count, unit="volume", desc="embedding",
                   disable=not (progress if progress is not None else count > _PROGRESS_FROM))
        chunks = []
        with bar:
            for start in range(0, count, batch_size):
                part = images[start:start + batch_size]
                batch = part if isinstance(part, torch.Tensor) else torch.stack(
                    [self.preprocess(x) for x in part])
                ids = None if index is None else torch.full((len(batch),), index)
                chunks.append(self._encode_image_batch(batch.float(), ids))
                bar.update(len(batch))
        return torch.cat(chunks) if chunks else torch.empty(0, self.embed_dim)

    @torch.no_grad()
    def encode_batch(self, images: torch.Tensor, sequences: Sequence[str] | None = None
                     ) -> torch.Tensor:
        """(B, 1, D, H, W) preprocessed volumes (e.g. from the cache) → (B, E) on the CPU;
        ``sequences`` names each volume's sequence (used with a sequence embedding)."""
        ids = None
        if self.model.sequence_embedding is not None and sequences is not None:
            ids = torch.tensor([self._sequence_index(s) for s in sequences])
        return self._encode_image_batch(images, ids)

    def _encode_image_batch(self, batch: torch.Tensor, sequence_ids: torch.Tensor | None
                            ) -> torch.Tensor:
        """(B, 1, D, H, W) and (B,) int64 sequence indices or None → (B, E) on the CPU."""
        batch = batch.to(self.device, non_blocking=True)
        if sequence_ids is not None:
            sequence_ids = sequence_ids.to(self.device, torch.long)
        with torch.autocast("cuda", enabled=self.device.type == "cuda"):
            return self.model.encode_image(batch, sequence_ids).float().cpu()

    def _sequence_index(self, sequence: str | None) -> int | None:
        if self.model.sequence_embedding is None:
            return None
        if self.sequences is None or sequence is None or sequence.lower() not in self.sequences:
            known = ", ".join(self.sequences or {})
            raise ValueError(f"this model adds a sequence embedding: pass sequence= one of "
                             f"{known} (got {sequence!r})")
        return self.sequences[sequence.lower()]

    # -- texts --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Report texts → (N, E) unit embeddings on the CPU (the run's tokenizer, added
        tokens and ``max_length``).

        Raises:
            ValueError: an empty or blank text (its index is named).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {i} is empty: every text needs some words")
        chunks = []
        for start in range(0, len(texts), batch_size):
            ids, mask = tokenize(texts[start:start + batch_size], self.tokenizer,
                                 self.max_length)
            with torch.autocast("cuda", enabled=self.device.type == "cuda"):
                chunks.append(self.model.encode_text(ids.to(self.device), mask.to(self.device))
                              .float().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, self.embed_dim)

    # -- comparing ------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return int(self.model.image_projection.linear.out_features)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale().detach())

    def similarity(self, images: Sequence[ImageInput] | torch.Tensor, texts: Sequence[str],
                   sequence: str | None = None) -> torch.Tensor:
        """(N_images, N_texts) scaled logits s · cos(image, text), as in training."""
        return scaled_similarity(self.encode_images(images, sequence=sequence),
                                 self.encode_texts(texts), self.logit_scale)

    def zero_shot(self, images: Sequence[ImageInput] | torch.Tensor,
                  prompts: Mapping[str, Sequence[str]], sequence: str | None = None
                  ) -> tuple[list[str], torch.Tensor]:
        """Class probabilities by prompts: each class's prompt embeddings are averaged and
        re-normalised (as ``ZeroShotTask``); returns (class names, (N, C) softmax)."""
        if not prompts or any(not list(p) for p in prompts.values()):
            raise ValueError("prompts must give at least one prompt text for every class")
        names = list(prompts)
        vectors = class_prototypes([self.encode_texts(list(prompts[n])) for n in names])
        logits = scaled_similarity(self.encode_images(images, sequence=sequence), vectors,
                                   self.logit_scale)
        return names, logits.softmax(-1)
