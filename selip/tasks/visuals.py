"""TensorBoard figures for pretraining: similarity images, input slices, the projector.

Report texts never reach the logs unless the caller passes them (an explicit opt-in):
they are patient data.
"""

from __future__ import annotations

from typing import Any

import torch


def side_by_side(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, B) predicted and target row distributions → (1, B, 2B + 1) image in [0, 1],
    each scaled by its own maximum, with a one-pixel separator."""
    def scaled(m: torch.Tensor) -> torch.Tensor:
        return m / m.max().clamp(min=1e-12)

    gap = torch.ones(predicted.shape[0], 1, device=predicted.device)
    return torch.cat([scaled(predicted.float()), gap, scaled(target.float())], dim=1)[None]


def mid_slices(volumes: torch.Tensor) -> torch.Tensor:
    """(n, 1, D, H, W) volumes → (n, 1, H, W) axial mid-slices, flipped so anterior is up."""
    d = volumes.shape[2] // 2
    return volumes[:, :, d].flip(-2).clamp(0, 1)


def log_validation_figures(logger: Any, step: int, predicted: torch.Tensor,
                           target: torch.Tensor, volumes: torch.Tensor,
                           embeddings: dict[str, torch.Tensor], sequence_names: list[str],
                           class_names: list[str], report_texts: list[str] | None) -> None:
    """Write the figures to a TensorBoard logger (other loggers are skipped)."""
    writer = getattr(logger, "experiment", None)
    if writer is None or not hasattr(writer, "add_image"):
        return
    writer.add_image("val/similarity_predicted_vs_target",
                     side_by_side(predicted.cpu(), target.cpu()), step)
    writer.add_images("val/input_mid_slices", mid_slices(volumes.cpu()), step)
    metadata, header = _metadata(embeddings, sequence_names, class_names, report_texts)
    for kind in ("image", "text"):
        writer.add_embedding(embeddings[f"{kind}_emb"].cpu(), metadata=metadata,
                             metadata_header=header, tag=f"val_{kind}_embeddings",
                             global_step=step)


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
