"""TensorBoard figures for pretraining: similarity heatmaps, input slices, the projector.

The figures are drawn with matplotlib at a readable size (axes, titles, colour bars)
rather than logged as raw tensors, which TensorBoard shows at one pixel per value. They
are built as bare :class:`matplotlib.figure.Figure` objects, never through pyplot: that
needs no backend, so a library never overrides the backend its user chose, and a figure
nobody references any more is simply garbage collected (pyplot would keep it alive).

Report texts never reach the logs unless the caller passes them (an explicit opt-in):
they are patient data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

SIMILARITY_TAG = "val/similarity_predicted_vs_target"
SLICES_TAG = "val/input_mid_slices"

DPI = 100
SIMILARITY_SIZE_INCHES = (10.0, 4.5)  # two square heatmaps with colour bars, 1000×450 px
SLICE_PANEL_INCHES = 3.0  # 300 px per slice at DPI 100: anatomy is recognisable
SLICES_PER_ROW = 4


def similarity_figure(predicted: torch.Tensor, target: torch.Tensor) -> Figure:
    """Predicted and target similarity side by side.

    ``predicted`` is (B, B'): each image's distribution over the batch's texts,
    softmax(logits) per row; ``target`` is (B, B'): the soft targets Q. Each panel has its
    own colour bar because the two can differ by orders of magnitude (a confident model
    against a spread-out Q); both start at 0 so "no mass" reads the same in both.
    """
    figure = Figure(figsize=SIMILARITY_SIZE_INCHES, dpi=DPI, layout="constrained")
    panels = (("predicted: softmax(logits) per row", predicted),
              ("target: Q per row", target))
    for axes, (title, matrix) in zip(figure.subplots(1, 2), panels, strict=True):
        image = axes.imshow(_numpy(matrix), cmap="viridis", vmin=0.0,
                            interpolation="nearest")  # one cell per pair, no smoothing
        axes.set_title(title)
        axes.set_xlabel("text (batch column)")
        axes.set_ylabel("image (batch row)")
        # Batch indices are integers; the locator keeps large batches from crowding.
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        figure.colorbar(image, ax=axes, label="probability")
    return figure


def mid_slices(volumes: torch.Tensor) -> torch.Tensor:
    """(n, 1, D, H, W) volumes → (n, 1, H, W) axial mid-slices, flipped so anterior is up."""
    d = volumes.shape[2] // 2
    return volumes[:, :, d].flip(-2).clamp(min=0)


def slices_figure(volumes: torch.Tensor, labels: list[str]) -> Figure:
    """(n, 1, D, H, W) preprocessed volumes → a grid of their axial mid-slices (anterior
    up), one panel per volume titled with its label."""
    count = volumes.shape[0]
    if count == 0 or len(labels) != count:
        raise ValueError(f"need one label per volume and at least one volume, "
                         f"got {count} volumes and {len(labels)} labels")
    columns = min(count, SLICES_PER_ROW)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(SLICE_PANEL_INCHES * columns, SLICE_PANEL_INCHES * rows),
                    dpi=DPI, layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    slices = mid_slices(volumes.detach().float().cpu())[:, 0]
    # One window for every panel keeps them comparable; it reaches past 1 when a volume does
    # (the median scale leaves a lesion above normal tissue, which must not saturate).
    top = max(1.0, float(slices.max())) if slices.numel() else 1.0
    for axes, image, label in zip(grid, slices, labels, strict=False):
        axes.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=top)
        axes.set_title(label)
    for axes in grid:
        axes.set_axis_off()  # voxel indices carry no meaning here; unused panels stay blank
    return figure


def slice_labels(count: int, sequence_names: list[str],
                 sequences: torch.Tensor | None = None,
                 report_ids: torch.Tensor | None = None) -> list[str]:
    """Titles such as ``"flair · report 17"`` for ``count`` volumes, from (count,)
    sequence indices and (count,) report ids; whichever is missing is left out, and
    ``"input i"`` stands in when both are."""
    labels = []
    for i in range(count):
        parts = []
        if sequences is not None:
            parts.append(_name(sequence_names, int(sequences[i])))
        if report_ids is not None:
            parts.append(f"report {int(report_ids[i])}")
        labels.append(" · ".join(parts) or f"input {i}")
    return labels


def log_validation_figures(logger: Any, step: int, predicted: torch.Tensor,
                           target: torch.Tensor, volumes: torch.Tensor,
                           embeddings: dict[str, torch.Tensor], sequence_names: list[str],
                           class_names: list[str], report_texts: list[str] | None, *,
                           volume_sequences: torch.Tensor | None = None,
                           volume_report_ids: torch.Tensor | None = None) -> None:
    """Write the figures to a TensorBoard logger (other loggers are skipped).

    ``predicted`` and ``target`` are (B, B) row distributions, ``volumes`` (n, 1, D, H, W),
    ``volume_sequences`` and ``volume_report_ids`` (n,) label the slices (optional).
    """
    writer = getattr(logger, "experiment", None)
    if writer is None or not hasattr(writer, "add_figure"):
        return
    # close=False: these figures were never registered with pyplot, there is nothing to
    # close; dropping the reference after logging frees them.
    writer.add_figure(SIMILARITY_TAG, similarity_figure(predicted, target), step, close=False)
    labels = slice_labels(volumes.shape[0], sequence_names, volume_sequences,
                          volume_report_ids)
    writer.add_figure(SLICES_TAG, slices_figure(volumes, labels), step, close=False)
    metadata, header = _metadata(embeddings, sequence_names, class_names, report_texts)
    for kind in ("image", "text"):
        writer.add_embedding(embeddings[f"{kind}_emb"].cpu(), metadata=metadata,
                             metadata_header=header, tag=f"val_{kind}_embeddings",
                             global_step=step)


def _numpy(matrix: torch.Tensor) -> npt.NDArray[np.float32]:
    """A float32 CPU numpy copy that matplotlib can draw (bf16/half and CUDA cannot)."""
    return matrix.detach().float().cpu().numpy()


def _metadata(embeddings: dict[str, torch.Tensor], sequence_names: list[str],
              class_names: list[str], report_texts: list[str] | None
              ) -> tuple[list[list[str]], list[str]]:
    count = embeddings["image_emb"].shape[0]
    header = ["sample_id", "sequence", "report_id"]
    columns = [[str(int(v)) for v in embeddings["sample_id"]],
               [_name(sequence_names, int(v)) for v in embeddings["sequence"]],
               [str(int(v)) for v in embeddings["report_id"]]]
    if "label" in embeddings:
        header.append("label")
        columns.append([_name(class_names, int(v)) for v in embeddings["label"]])
    if report_texts is not None:
        header.append("report")
        columns.append([report_texts[int(v)].replace("\n", " ")
                        for v in embeddings["report_id"]])
    return [[column[i] for column in columns] for i in range(count)], header


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)
