"""Activation memory per sample of a pretraining step, with and without checkpointing.

Measures on CPU, for the model of ``configs/pretrain.yaml`` (3D ResNet-50, width 64,
anisotropic stem; a BERT-base text encoder at 256 tokens, the shape of the paper's
hfl/chinese-bert-wwm; ``--text minilm``: the config's packaged default), two figures per
sample:

* saved: bytes of the tensors autograd saves for backward during the forward
  (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once, parameters
  left out) — deterministic;
* peak: the highest live bytes of the CPU allocator over forward + backward (the
  profiler's allocation events), which adds what saved leaves out: the recomputation of
  a checkpointed piece in the backward, activation gradients, the input and temporaries.

Per sample = the figure at batch 3 minus the one at batch 2, so weights, their 16-bit
copies and parameter gradients cancel (for the peak: the largest difference at the same
point of the two steps). The image encoder runs at a reduced volume (default
32×112×112, the paper's depth) and is scaled to 32×224×224 by the voxel count (activations
are proportional to it; ``--shape 32 224 224`` measures the full size, ~3 GB of RAM).

Precision. The image encoder runs with bf16 weights and input (no autocast): the layout
CUDA's 16-mixed gives, where convolutions, batch norm, ReLU and max-pool all run in 16 bit.
CPU autocast differs there (it runs max-pool in float32, an extra float32 copy of the stem
output), so it is printed too, for reference only. The text encoder runs in float32, an
upper bound used for the cards (CUDA autocast keeps its residual stream and layer norms in
float32 but feeds the linear layers 16-bit copies), and under CPU bf16 autocast, a lower
bound (CPU autocast runs layer norm and softmax in bf16).

Image variants: plain; ``per stage`` (the stem and each of the four stages checkpointed,
written here for comparison); ``per block`` (``image_encoder.gradient_checkpointing:
true``: the stem and each of the 16 residual blocks). Text: plain and
``text_encoder.gradient_checkpointing: true`` (Hugging Face's, per transformer layer).

Then the per-GPU batch that fits 40, 80 and 141 GB cards (assumptions printed). Step
times are CPU wall times of one warm batch-3 step: indicative of the recomputation's cost
only (a GPU's ratio differs).

    .venv/bin/python benchmarks/memory.py                       # ~2 minutes on 2 cores
    .venv/bin/python benchmarks/memory.py --shape 32 56 56      # quicker, scaled 16x
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.checkpoint import checkpoint

from selip.models import ImageEncoder, ImageEncoderConfig, SelipModel, TextEncoderConfig
from selip.models.image_encoder import batchnorm_stats_kept

FULL_SHAPE = (32, 224, 224)  # configs/pretrain.yaml, voxels (D, H, W)
PAPER_BATCH = 64  # per GPU, configs/pretrain.yaml
TEXT_LENGTH = 256  # data.max_length
# The paper's hfl/chinese-bert-wwm has BERT-base's shape; minilm: the packaged default of
# configs/pretrain.yaml (6 layers, 384 wide), as it is.
TEXT_MODELS: dict[str, dict[str, int]] = {
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072, "vocab_size": 21128},
    "minilm": {},
}
MIB = 2**20
GIB = 2**30
# Cards by the total memory nvidia-smi reports (MiB): A100 40GB; H100 80GB (the smaller of
# the 80 GB cards; A100 80GB has 81,920); H200 (sold as 141 GB).
CARDS = {"40 GB (A100)": 40_960, "80 GB (A100/H100)": 81_559, "141 GB (H200)": 143_771}
# Per trained parameter: float32 weight 4 + gradient 4 + AdamW's two moments 8 + DDP's
# gradient bucket 4 (a copy, gradient_as_bucket_view is off) + autocast's 16-bit copy 2.
BYTES_PER_PARAMETER = 22
CONTEXT_GIB = 2.0  # CUDA context, cuDNN/cuBLAS workspaces, NCCL buffers
FRAGMENTATION = 0.10  # share of the card the caching allocator cannot hand out


@dataclass
class Usage:
    """One forward + backward: saved bytes and the allocator's live bytes after each
    allocation or free, in order."""

    saved: int
    live: list[int]


@dataclass
class PerSample:
    """Bytes per sample (batch 3 minus batch 2) and seconds of a batch-3 step (warm, not
    profiled)."""

    saved: float
    peak: float
    seconds: float


def saved_tensor_bytes(excluded: set[int]
                       ) -> tuple[Callable[[], int], torch.autograd.graph.saved_tensors_hooks]:
    """A ``saved_tensors_hooks`` context counting each saved storage once, and its total.

    ``excluded``: storage addresses not to count (the parameters).
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
    return lambda: sum(storages.values()), hooks


def allocator_trace(prof: profile) -> list[int]:
    """Live bytes of the CPU allocator after each allocation and free during ``prof``.

    ``total_allocated`` is the allocator's running total counted from the profiler's start
    (tensors that existed before are not in it). Private API of torch's profiler.
    """
    from torch._C._profiler import _EventType

    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())  # type: ignore[union-attr]
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            events.append((node.start_time_ns, int(fields.alloc_size),
                           int(fields.total_allocated)))
        stack.extend(node.children)
    return [total for _, _, total in sorted(events)]


def measure(module: torch.nn.Module, step: Callable[[], torch.Tensor]) -> Usage:
    """Saved bytes of ``step()`` (a forward returning a scalar) and the peak of it + its
    backward. Inputs should be made inside ``step`` so that the peak counts them."""
    excluded = {p.untyped_storage().data_ptr() for p in module.parameters()}
    total, hooks = saved_tensor_bytes(excluded)
    # Parameter gradients exist before the step (they are in the fixed share, not per
    # sample): allocated during the backward, they would move its peak.
    for parameter in module.parameters():
        parameter.grad = torch.zeros_like(parameter)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with hooks:
            loss = step()
        loss.backward()
    module.zero_grad(set_to_none=True)
    return Usage(total(), allocator_trace(prof))


def step_seconds(module: torch.nn.Module, step: Callable[[], torch.Tensor]) -> float:
    """Wall time of ``step()`` and its backward, neither profiled nor hooked."""
    started = time.perf_counter()
    step().backward()
    seconds = time.perf_counter() - started
    module.zero_grad(set_to_none=True)
    return seconds


def per_sample(module: torch.nn.Module,
               step: Callable[[int], Callable[[], torch.Tensor]]) -> PerSample:
    """Batch 3 minus batch 2: the cost of one more sample (batch 1 takes other code paths
    in the text encoder).

    The peak per sample is the largest difference of live bytes at the same point of the
    two steps (they allocate in the same order), not the difference of their peaks: batch-
    independent temporaries (a weight-sized gradient buffer) decide where a small batch
    peaks, while a real batch peaks where the per-sample memory is largest.
    """
    two, three = measure(module, step(2)), measure(module, step(3))
    if len(two.live) != len(three.live):
        raise RuntimeError(f"batch 2 and 3 allocated differently ({len(two.live)} vs "
                           f"{len(three.live)} events): the peak per sample is undefined")
    peak = max(b - a for a, b in zip(two.live, three.live, strict=True))
    return PerSample(three.saved - two.saved, peak, step_seconds(module, step(3)))


def per_stage_forward(encoder: ImageEncoder, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) → (B, F) with the stem and each of the four stages checkpointed:
    coarser pieces than the encoder's own ``gradient_checkpointing`` (the stem and each
    residual block), for comparison."""
    net = encoder.resnet

    def piece(fn: Callable[[torch.Tensor], torch.Tensor], norms: torch.nn.Module,
              h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = checkpoint(fn, h, use_reentrant=False, context_fn=lambda: (
            nullcontext(), batchnorm_stats_kept(norms)))
        return out

    h = piece(lambda v: net.maxpool(net.act(net.bn1(net.conv1(v)))), net.bn1, x)
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        h = piece(layer, layer, h)
    return net.avgpool(h).flatten(1)


def image_step(encoder: ImageEncoder, variant: str, batch: int, *, shape: tuple[int, ...],
               autocast: bool) -> Callable[[], torch.Tensor]:
    """A forward of ``encoder`` on a fresh float32 batch (B, 1, D, H, W), as ``measure``
    wants it. 16-bit: the batch is cast to the weights' bf16 (autocast's copy on a GPU)."""
    encoder.config = replace(encoder.config, gradient_checkpointing=variant == "per block")

    def step() -> torch.Tensor:
        volume = torch.randn(batch, 1, *shape)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            x = volume if autocast else volume.to(torch.bfloat16)
            out = per_stage_forward(encoder, x) if variant == "per stage" else encoder(x)
        return out.float().square().mean()

    return step


def text_step(model: SelipModel, batch: int, *, autocast: bool) -> Callable[[], torch.Tensor]:
    """A forward of the text encoder on ``batch`` reports of ``TEXT_LENGTH`` tokens."""
    vocabulary = model.text_encoder.base_vocabulary

    def step() -> torch.Tensor:
        ids = torch.randint(1000, vocabulary, (batch, TEXT_LENGTH))
        mask = torch.ones_like(ids)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model.text_encoder(ids, mask)
        return out.float().square().mean()

    return step


@dataclass
class Row:
    """One line of the table: per sample at the measured size and scaled to full size."""

    name: str
    measured: PerSample
    scale: float

    def saved_full(self) -> float:
        return self.measured.saved * self.scale

    def peak_full(self) -> float:
        return self.measured.peak * self.scale


def measure_text(model: SelipModel, log: Callable[[str], None]) -> list[Row]:
    """Per-sample rows of the text encoder: plain, then with its gradient checkpointing;
    each in float32 (used for the cards) and under CPU bf16 autocast (a lower bound)."""
    rows = []
    for name in ("plain", "gradient_checkpointing"):
        if name != "plain":  # what TextEncoder does for gradient_checkpointing: true
            model.text_encoder.model.gradient_checkpointing_enable()
        for autocast in (False, True):
            precision = "CPU bf16 autocast" if autocast else "float32"
            usage = per_sample(model.text_encoder, partial(text_step, model, autocast=autocast))
            rows.append(Row(f"text {name}, {precision}", usage, 1.0))
            log(rows[-1].name)
    return rows


def measure_image(encoder: ImageEncoder, variant: str, shape: tuple[int, ...],
                  autocast: bool, scale: float, log: Callable[[str], None]) -> Row:
    """The per-sample row of one image variant, scaled by ``scale`` to the full size."""
    usage = per_sample(encoder, partial(image_step, encoder, variant, shape=shape,
                                        autocast=autocast))
    name = f"image {variant}" + (", CPU bf16 autocast" if autocast else "")
    log(name)
    return Row(name, usage, scale)


def fits(card_mib: int, fixed: float, per_sample_bytes: float) -> int:
    """Samples per GPU that fit ``card_mib`` after the fixed share and the reserve."""
    usable = card_mib * MIB * (1 - FRAGMENTATION) - CONTEXT_GIB * GIB - fixed
    return max(0, math.floor(usable / per_sample_bytes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 112, 112],
                        metavar=("D", "H", "W"), help="measured volume (full: 32 224 224)")
    parser.add_argument("--text", choices=sorted(TEXT_MODELS), default="bert-base",
                        help="text encoder shape (random weights; memory only)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    shape = tuple(args.shape)
    scale = math.prod(FULL_SHAPE) / math.prod(shape)

    torch.manual_seed(0)
    text_config = TextEncoderConfig(pretrained=False, config_overrides=TEXT_MODELS[args.text])
    model = SelipModel(ImageEncoderConfig(), text_config, embed_dim=512).train()
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    image_parameters = sum(p.numel() for p in model.image_encoder.parameters())

    def log(name: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {name}", flush=True)

    text_rows = measure_text(model, log)
    encoder = model.image_encoder.to(torch.bfloat16)
    image_rows = [measure_image(encoder, v, shape, False, scale, log)
                  for v in ("plain", "per stage", "per block")]
    encoder.float()
    autocast_rows = [measure_image(encoder, v, shape, True, scale, log)
                     for v in ("plain", "per block")]
    report(shape, scale, args.text, parameters, image_parameters, image_rows, autocast_rows,
           text_rows)
    print(f"\ntotal runtime {time.perf_counter() - started:.0f} s")


def report(shape: tuple[int, ...], scale: float, text: str, parameters: int,
           image_parameters: int, image_rows: list[Row], autocast_rows: list[Row],
           text_rows: list[Row]) -> None:
    """Print the machine, the per-sample table, the ratios and the batch per card."""
    print(f"\nmachine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), no GPU")
    print(f"image encoder: ResNet-50 w64, anisotropic stem, {image_parameters / 1e6:.1f} M "
          f"parameters, bf16; measured at {'×'.join(map(str, shape))}, scaled ×{scale:g} to "
          f"{'×'.join(map(str, FULL_SHAPE))}; text encoder: {text} shape, {TEXT_LENGTH} "
          "tokens (not scaled)\n")
    print("| per sample | saved, measured size (MiB) | peak, measured size (MiB) | "
          "saved, full size (MiB) | peak, full size (MiB) | step s (batch 3, CPU) |")
    print("|---|---|---|---|---|---|")
    for row in [*image_rows, *autocast_rows, *text_rows]:
        m = row.measured
        print(f"| {row.name} | {m.saved / MIB:,.1f} | {m.peak / MIB:,.1f} | "
              f"{row.saved_full() / MIB:,.0f} | {row.peak_full() / MIB:,.0f} | "
              f"{m.seconds:.1f} |")
    text_plain, text_plain_low, text_ckpt, text_ckpt_low = text_rows
    print("\nplain / checkpointed, per sample (side by side above):")
    for plain, row in [*((image_rows[0], r) for r in image_rows[1:]), (text_plain, text_ckpt)]:
        print(f"  {row.name}: saved {plain.measured.saved / row.measured.saved:.2f}x less, "
              f"peak {plain.measured.peak / row.measured.peak:.2f}x less, step "
              f"{row.measured.seconds / plain.measured.seconds:.2f}x the time")

    fixed = parameters * BYTES_PER_PARAMETER
    print(f"\nper-GPU batch that fits at 32×224×224, 16-mixed: usable = card x "
          f"{1 - FRAGMENTATION:.2f} - {CONTEXT_GIB:g} GiB (CUDA context, workspaces) - "
          f"{fixed / GIB:.1f} GiB ({parameters / 1e6:.0f} M trained parameters x "
          f"{BYTES_PER_PARAMETER} B: float32 weight, gradient, AdamW moments, DDP bucket, "
          f"16-bit copy); per sample = image peak (bf16) + text peak (float32; in brackets "
          f"with the CPU-autocast text, a lower bound); the paper's batch: {PAPER_BATCH}\n")
    settings = [("plain (both off)", image_rows[0], text_plain, text_plain_low),
                ("image gradient_checkpointing", image_rows[2], text_plain, text_plain_low),
                ("image + text gradient_checkpointing", image_rows[2], text_ckpt,
                 text_ckpt_low)]
    print("| setting | per sample (MiB) | " + " | ".join(CARDS) + " |")
    print("|---|---|" + "---|" * len(CARDS))
    for name, image, words, words_low in settings:
        sample = image.peak_full() + words.peak_full()
        low = image.peak_full() + words_low.peak_full()
        batches = [f"{fits(card, fixed, sample)} ({fits(card, fixed, low)})"
                   for card in CARDS.values()]
        print(f"| {name} | {sample / MIB:,.0f} ({low / MIB:,.0f}) | " + " | ".join(batches)
              + " |")


if __name__ == "__main__":
    main()
