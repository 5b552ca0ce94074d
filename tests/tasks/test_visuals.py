"""The validation figures: readable matplotlib drawings, logged under fixed tags."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from selip.tasks.visuals import (
    SIMILARITY_TAG,
    SLICES_TAG,
    log_validation_figures,
    similarity_figure,
    slice_labels,
    slices_figure,
)

SEQUENCES = ["t1", "t2", "flair"]


class _Writer:
    """Records what a TensorBoard SummaryWriter would be asked to log."""

    def __init__(self) -> None:
        self.figures: list[tuple[str, Figure, int]] = []
        self.embeddings: list[dict[str, Any]] = []

    def add_figure(self, tag: str, figure: Figure, global_step: int, **kwargs: Any) -> None:
        FigureCanvasAgg(figure).draw()  # as SummaryWriter does: the figure must render
        self.figures.append((tag, figure, global_step))

    def add_embedding(self, mat: torch.Tensor, **kwargs: Any) -> None:
        self.embeddings.append({"mat": mat, **kwargs})


def _distributions(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, batch, generator=torch.Generator().manual_seed(seed)).softmax(-1)


def _volumes(count: int) -> torch.Tensor:
    return torch.rand(count, 1, 8, 12, 10, generator=torch.Generator().manual_seed(0))


def _embeddings(count: int) -> dict[str, torch.Tensor]:
    return {"image_emb": torch.randn(count, 4), "text_emb": torch.randn(count, 4),
            "sample_id": torch.arange(count), "sequence": torch.arange(count) % 3,
            "report_id": torch.arange(count) + 10}


def _image_axes(figure: Figure) -> list[Any]:
    return [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]


def test_similarity_figure_has_two_labelled_heatmaps_with_colour_bars():
    figure = similarity_figure(_distributions(6, 0), _distributions(6, 1))
    heatmaps = _image_axes(figure)
    colour_bars = [axes for axes in figure.axes if axes.get_label() == "<colorbar>"]
    assert len(heatmaps) == 2 and len(colour_bars) == 2
    assert all(len(axes.images) == 1 for axes in heatmaps)
    assert "predicted" in heatmaps[0].get_title() and "target" in heatmaps[1].get_title()
    for axes in heatmaps:
        assert axes.get_xlabel() == "text (batch column)"
        assert axes.get_ylabel() == "image (batch row)"
        assert axes.images[0].get_array().shape == (6, 6)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    width, height = canvas.get_width_height()
    assert width >= 600 and height >= 300


def test_similarity_figure_accepts_half_precision():
    figure = similarity_figure(_distributions(3, 0).half(), _distributions(3, 1).bfloat16())
    FigureCanvasAgg(figure).draw()


def test_slices_figure_has_one_titled_panel_per_volume():
    labels = slice_labels(3, SEQUENCES, torch.tensor([2, 0, 7]), torch.tensor([17, 4, 5]))
    assert labels == ["flair · report 17", "t1 · report 4", "7 · report 5"]
    figure = slices_figure(_volumes(3), labels)
    panels = [axes for axes in figure.axes if axes.images]
    assert [axes.get_title() for axes in panels] == labels
    image = panels[0].images[0]
    assert image.get_array().shape == (12, 10)  # (H, W) of the mid-slice
    assert image.get_clim() == (0.0, 1.0) and image.get_cmap().name == "gray"
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    assert canvas.get_width_height() == (900, 300)  # three panels of 3 inches at dpi 100


def test_slices_figure_wraps_rows_and_shows_the_anterior_up_mid_slice():
    volumes = _volumes(5)
    figure = slices_figure(volumes, slice_labels(5, SEQUENCES))
    panels = [axes for axes in figure.axes if axes.images]
    assert len(panels) == 5 and len(figure.axes) == 8  # 2 rows of 4, three left blank
    expected = volumes[1, 0, 4].flip(0).numpy()
    np.testing.assert_allclose(np.asarray(panels[1].images[0].get_array()), expected)
    assert panels[1].get_title() == "input 1"


def test_slices_figure_needs_one_label_per_volume():
    with pytest.raises(ValueError, match="one label per volume"):
        slices_figure(_volumes(2), ["t1"])


def test_log_validation_figures_logs_both_figures_and_the_embeddings():
    writer = _Writer()
    log_validation_figures(SimpleNamespace(experiment=writer), 7,
                           predicted=_distributions(4, 0), target=_distributions(4, 1),
                           volumes=_volumes(2), embeddings=_embeddings(4),
                           sequence_names=SEQUENCES, class_names=[], report_texts=None,
                           volume_sequences=torch.tensor([2, 1]),
                           volume_report_ids=torch.tensor([17, 3]))
    assert [(tag, step) for tag, _, step in writer.figures] == [(SIMILARITY_TAG, 7),
                                                                (SLICES_TAG, 7)]
    assert SIMILARITY_TAG == "val/similarity_predicted_vs_target"
    assert SLICES_TAG == "val/input_mid_slices"
    titles = [axes.get_title() for axes in writer.figures[1][1].axes if axes.images]
    assert titles == ["flair · report 17", "t2 · report 3"]
    assert [e["tag"] for e in writer.embeddings] == ["val_image_embeddings",
                                                     "val_text_embeddings"]
    assert writer.embeddings[0]["metadata_header"] == ["sample_id", "sequence", "report_id"]
    assert writer.embeddings[0]["metadata"][2] == ["2", "flair", "12"]
    assert all(e["global_step"] == 7 for e in writer.embeddings)


def test_log_validation_figures_old_callers_get_generic_slice_titles():
    writer = _Writer()
    log_validation_figures(SimpleNamespace(experiment=writer), 0, _distributions(2, 0),
                           _distributions(2, 1), _volumes(1), _embeddings(2), SEQUENCES,
                           [], None)
    assert [axes.get_title() for axes in writer.figures[1][1].axes] == ["input 0"]


@pytest.mark.parametrize("logger", [None, SimpleNamespace(), SimpleNamespace(experiment=object())])
def test_log_validation_figures_skips_loggers_without_a_tensorboard_writer(logger):
    log_validation_figures(logger, 0, _distributions(2, 0), _distributions(2, 1),
                           _volumes(1), _embeddings(2), SEQUENCES, [], None)
