"""3D ResNet image encoders (laid out as MONAI's ResNet, see :mod:`selip.models.resnet3d`)
with the paper's anisotropic stem.

The paper's stem convolves with stride (1, 2, 2) and max-pools with stride (1, 2, 2) so
the slice axis D is not downsampled early (clinical volumes have few, thick slices).
Depth 10/18/34/50 and a width multiplier let tests and CPU demos use tiny networks.

Normalisation (``norm``) is group norm by default: it normalises each sample by itself, so
eval mode computes exactly what training computed, whatever the batch size and however
fast the weights move. Batch norm's running statistics are a momentum average that trails
weights changing under AdamW: measured on the demo's FLAIR lesion check, eval mode with
them predicted one class on the training set itself while the same weights with
recomputed statistics scored 0.98–1.0. Batch norm stays an option (and every checkpoint
from before the setting uses it); :mod:`selip.models.precise_bn` recomputes its
statistics before evaluation.

``gradient_checkpointing`` (activation checkpointing) keeps only the input of the stem and
of each residual block during the forward and recomputes the rest, one block at a time, in
the backward: several times less activation memory per sample for about one more forward
of compute (``benchmarks/memory.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from selip.models.resnet3d import BlockKind, ResNet3d

_T = TypeVar("_T")
_LAYERS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}
NormKind = Literal["group", "batch", "instance"]
NORMS: tuple[str, ...] = ("group", "batch", "instance")
#: The norm of every encoder recorded before the setting existed, and the fields such a
#: record holds.
LEGACY_NORM: NormKind = "batch"
_FIELDS_BEFORE_NORM = frozenset({"depth", "width", "anisotropic_stem", "in_channels",
                                 "gradient_checkpointing"})


@dataclass(frozen=True)
class ImageEncoderConfig:
    """A 3D ResNet.

    Args:
        depth: 10, 18, 34 (basic blocks) or 50 (bottlenecks).
        width: channels of the first stage (64 in the paper); later stages double it.
        anisotropic_stem: stem conv and max-pool stride (1, 2, 2) instead of 2.
        in_channels: input channels (one sequence per pair in pretraining).
        gradient_checkpointing: activation checkpointing of the stem and of every residual
            block while training: about one more forward of compute for several times less
            activation memory (the text encoder's option has the same name). Outputs,
            gradients and batch-norm running statistics are those of the plain network.
        norm: ``group`` (groups of :func:`group_count` channels; the same features in
            eval mode as in training), ``batch`` (running statistics; recomputed before
            evaluation by :class:`selip.training.precise_bn.PreciseBatchNorm`) or
            ``instance`` (each channel of each sample by itself).
    """

    depth: int = 50
    width: int = 64
    anisotropic_stem: bool = True
    in_channels: int = 1
    gradient_checkpointing: bool = False
    norm: NormKind = "group"

    def __post_init__(self) -> None:
        if self.depth not in _LAYERS:
            raise ValueError(f"image encoder depth must be one of {sorted(_LAYERS)}, "
                             f"got {self.depth}")
        if self.width < 1 or self.in_channels < 1:
            raise ValueError(f"width and in_channels must be >= 1, got {self.width}, "
                             f"{self.in_channels}")
        if self.norm not in NORMS:
            raise ValueError(f"image encoder norm must be one of {', '.join(NORMS)}, "
                             f"got {self.norm!r}")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ImageEncoderConfig:
        """The settings a checkpoint or export recorded (``dataclasses.asdict`` of this
        class), or any mapping of them. A record holds every field of its release, so a
        complete one without ``norm`` was written before the setting existed, when every
        encoder used batch norm; a partial mapping (written by hand) takes the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"unknown image encoder settings {unknown}; known: {sorted(known)}")
        if "norm" not in record and set(record) >= _FIELDS_BEFORE_NORM:
            return cls(**record, norm=LEGACY_NORM)
        return cls(**record)


def group_count(width: int) -> int:
    """Groups of every group norm of a ``width`` encoder: the largest divisor of ``width``
    up to 32 that leaves at least 2 channels per group in the narrowest layer (32 groups
    at the paper's width 64, 8 at the demo's 16). Every later layer's channels are
    multiples of ``width``, so the same count divides them all."""
    return max(g for g in range(1, 33) if width % g == 0 and (width // g >= 2 or g == 1))


def make_norm(kind: str, channels: int, width: int) -> nn.Module:
    """One normalisation layer of a ``width`` encoder over ``channels`` channels."""
    if kind == "group":
        return nn.GroupNorm(group_count(width), channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    return nn.BatchNorm3d(channels)


def use_norm(module: nn.Module, kind: str, width: int) -> None:
    """Replace every ``BatchNorm3d`` inside ``module`` by a ``kind`` norm, in place.

    For MONAI's own ResNet (an exported image tower used in another project): it takes a
    ``norm`` argument but passes it only to its stem (1.6: the residual stages and their
    shortcuts are built with batch norm whatever it says), so the layers are swapped after
    construction. Every replaced layer is freshly initialised (weight 1, bias 0), as MONAI
    initialises its norms.
    """
    if kind == "batch":
        return
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm3d):
            setattr(module, name, make_norm(kind, child.num_features, width))
        else:
            use_norm(child, kind, width)


class ImageEncoder(nn.Module):
    """(B, C, D, H, W) volume → (B, F) pooled features; ``stages`` for decoders."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        block: BlockKind = "bottleneck" if config.depth == 50 else "basic"
        widths = [config.width * 2**i for i in range(4)]
        stride: tuple[int, int, int] | int = (1, 2, 2) if config.anisotropic_stem else 2
        self.resnet = ResNet3d(block, _LAYERS[config.depth], widths,
                               in_channels=config.in_channels, stem_stride=stride,
                               pool_stride=stride,
                               norm=lambda channels: make_norm(config.norm, channels,
                                                               config.width))
        expansion = self.resnet.expansion
        self.out_features = widths[-1] * expansion
        self.stage_channels = [config.width] + [w * expansion for w in widths]

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of the stem and the four stages, fine to coarse (for U-Net skips).

        (B, C, D, H, W) → [(B, stage_channels[i], D_i, H_i, W_i) for i in 0..4].
        """
        net = self.resnet
        stem, h = self._run(self._stem, net.bn1, x)
        maps = [stem]
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                h = self._run(block, block, h)
            maps.append(h)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, out_features), global average pooled.

        The same computation as ``self.resnet(x)`` (built without its ``fc`` head), run
        through :meth:`stages` so that it can be checkpointed.
        """
        return self.resnet.avgpool(self.stages(x)[-1]).flatten(1)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, D, H, W) → the stem's map (B, width, D, H/2, W/2 with the anisotropic
        stem) and its max-pooled version, the first stage's input."""
        net = self.resnet
        stem = net.act(net.bn1(net.conv1(x)))
        return stem, net.maxpool(stem)

    def _run(self, fn: Callable[[torch.Tensor], _T], norms: nn.Module, x: torch.Tensor) -> _T:
        """``fn(x)``; checkpointed when configured, in training and recording gradients.

        Each checkpointed piece (the stem, then every residual block) keeps only its input
        for the backward. Blocks rather than whole stages: a stage's recomputation would
        hold all of its activations at once, and the first stage alone holds about half of
        the network's, so the backward's peak would barely drop (``benchmarks/memory.py``
        measures both). ``norms``: the module whose batch norms ``fn`` runs.
        """
        if not (self.config.gradient_checkpointing and self.training
                and torch.is_grad_enabled()):
            return fn(x)
        # Non-reentrant: works with inputs that need no gradient (the volume, a frozen
        # stem), with DDP, and recomputes under the forward's autocast and RNG state.
        out: _T = checkpoint(fn, x, use_reentrant=False,
                             context_fn=lambda: (nullcontext(), batchnorm_stats_kept(norms)))
        return out


@contextmanager
def batchnorm_stats_kept(module: nn.Module) -> Iterator[None]:
    """Run the body, then put back the buffers of ``module``'s batch norms.

    The backward recomputes a checkpointed piece in training mode, so without this its
    batch norms would update their running statistics (and ``num_batches_tracked``) a
    second time per step. The recomputation normalises with the batch's statistics either
    way, so restoring the buffers leaves outputs and gradients untouched. (Skipping the
    update instead, ``track_running_stats = False``, changes which tensors batch norm saves
    for backward, and the checkpoint's check that the recomputation saved the same tensors
    then fails.)
    """
    buffers = [buffer for norm in module.modules() if isinstance(norm, _BatchNorm)
               for buffer in norm.buffers(recurse=False)]
    kept = [buffer.clone() for buffer in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, kept, strict=True):
                buffer.copy_(value)


def match_input_channels(encoder: ImageEncoder, channels: int) -> None:
    """Make ``encoder`` take ``channels`` input channels, in place.

    A 1-channel stem (every pretraining checkpoint) is inflated: its kernel is repeated
    over the new channels and divided by their number, so a volume whose channels are all
    equal gives exactly the pretrained activations (the I3D inflation rule).

    Raises:
        ValueError: the encoder takes several channels already, and not ``channels``.
    """
    have = encoder.config.in_channels
    if have == channels:
        return
    if have != 1 or channels < 1:
        raise ValueError(f"the image encoder takes {have} input channels but the data gives "
                         f"{channels} (data.sequences with data.stack_sequences); only a "
                         "1-channel encoder can be inflated")
    conv = encoder.resnet.conv1
    assert isinstance(conv, nn.Conv3d)
    inflated = nn.Conv3d(channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
                         conv.stride, conv.padding, bias=conv.bias is not None,  # type: ignore[arg-type]
                         device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        inflated.weight.copy_(conv.weight.repeat(1, channels, 1, 1, 1) / channels)
        if conv.bias is not None and inflated.bias is not None:
            inflated.bias.copy_(conv.bias)
    inflated.requires_grad_(conv.weight.requires_grad)
    encoder.resnet.conv1 = inflated
    encoder.config = replace(encoder.config, in_channels=channels)
