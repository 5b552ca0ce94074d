"""Can the demo's image encoder see the lesions at all? A supervised check.

Contrastive pretraining can only align what the image encoder learns to see. This trains
the demo's encoder (`configs/demo.yaml`: ResNet-10, width 16, 64³ at 3 mm) *supervised*,
on the same training pairs and step budget as the demo, to answer one question per pair:
does this sequence show a lesion (the truth's signal is not ``isointense``)? It prints
validation accuracy every 50 steps beside the majority-class rate. If a supervised
encoder stays at the majority rate, no contrastive objective will find the disease either
— it learns what it can see (the sequence, the subject) instead.

``--intensity`` and ``--norm`` choose the preprocessing's intensity scheme (the cache must
hold it: ``selip prepare --data.intensity ...``) and the encoder's normalisation, so the
paper's percentile scaling with batch norm (``--intensity percentile --norm batch``, every
release before the median scale) and the defaults can be run side by side.

``--boost B`` adds ``B`` (images are scaled to [0, 1]) inside the lesion mask of every
visible pair: a control showing how bright a lesion must be for the encoder to find it
within the budget (and that the check itself works). ``--adc-percentile P`` clips every
ADC volume at its own P-th percentile and rescales it to [0, 1] — exactly what
preprocessing with ``intensity_percentiles (0.1, P)`` gives for ADC, since the cached
volume is a monotone linear map of the resampled one — so ADC's bright CSF saturates and
the dark lesion keeps more of the range.

Run after ``selip demo-data`` and ``selip prepare`` (it reads the preprocessing cache)::

    .venv/bin/python benchmarks/detectability.py --manifest demo_data/manifest.csv \\
        [--cache .cache/selip] [--steps 500] [--boost 0] [--lr 2e-3] [--seed 0] \\
        [--per-sequence-head] [--intensity median|percentile] [--norm group|batch]
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from selip.data.datamodule import SelipDataModule
from selip.data.intensity import INTENSITY_SCHEMES
from selip.demo.truth import load_truth
from selip.models.image_encoder import NORMS, ImageEncoder, ImageEncoderConfig
from selip.models.precise_bn import batch_norms, recompute_batchnorm_statistics

_SEQUENCES = ["t1", "t2", "flair", "dwi", "adc"]


def clip_high(image: torch.Tensor, percentile: float) -> torch.Tensor:
    """``image`` clipped at its ``percentile``-th percentile and rescaled to [0, 1]."""
    high = float(torch.quantile(image.flatten(), percentile / 100))
    return (image.clamp(max=high) / max(high, 1e-6)).clamp(0, 1)


def load_split(datamodule: SelipDataModule, split: str, truth: dict, boost: float,
               adc_percentile: float = 100.0
               ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Every pair of ``split``: images ``(N, 1, D, H, W)`` float32, labels ``(N,)``
    (1 = the pair's sequence shows a lesion), the boost painted into visible lesions, and
    each pair's visible signature (``infarct on flair``, or ``none``) and sequence index."""
    dataset = datamodule.datasets["train"]  # any split's dataset reads any pair
    images, labels, kinds, sequences = [], [], [], []
    for pair in (p for p in datamodule.pairs if p.split == split):
        sequence = datamodule.sequences[pair.sequence_index]
        findings = truth[(pair.exam_id, sequence)].findings
        visible = any(f.signal != "isointense signal" for f in findings)
        image = dataset.read_image(pair).float()
        if sequence == "adc" and adc_percentile < 100:
            image = clip_high(image, adc_percentile)
        if visible and boost:
            image = image + boost * dataset.read_mask(pair).float()
        images.append(image)
        labels.append(int(visible))
        shown = [f"{f.kind} on {sequence}" for f in findings if f.signal != "isointense signal"]
        kinds.append(shown[0] if shown else "none")
        sequences.append(pair.sequence_index)
    return torch.stack(images), torch.tensor(labels), kinds, torch.tensor(sequences)


class Head(nn.Module):
    """A linear head, shared by every sequence or one per sequence (``per_sequence``):
    features ``(B, F)``, sequence indices ``(B,)`` → logits ``(B, 2)``."""

    def __init__(self, features: int, sequences: int, per_sequence: bool) -> None:
        super().__init__()
        self.per_sequence = per_sequence
        self.linear = nn.Linear(features, 2 * sequences if per_sequence else 2)

    def forward(self, features: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        logits = self.linear(features)
        if not self.per_sequence:
            return logits
        return logits.view(len(logits), -1, 2)[torch.arange(len(logits)), sequence]


@torch.no_grad()
def predict(encoder: ImageEncoder, head: Head, images: torch.Tensor, sequences: torch.Tensor,
            recent: Iterable[torch.Tensor] = ()) -> torch.Tensor:
    """Predicted labels ``(N,)`` with the encoder in eval mode. Batch norms first get
    statistics recomputed over the ``recent`` training batches with the current weights,
    as ``fit`` does before every validation (``PreciseBatchNorm``)."""
    if batch_norms(encoder):
        recompute_batchnorm_statistics(encoder, recent)
    encoder.eval()
    predictions = torch.cat([head(encoder(images[i:i + 50]), sequences[i:i + 50]).argmax(1)
                             for i in range(0, len(images), 50)])
    encoder.train()
    return predictions


def per_signature(predictions: torch.Tensor, labels: torch.Tensor, kinds: list[str]
                  ) -> list[tuple[str, int, float]]:
    """Accuracy per visible signature (which lesion on which sequence, or ``none``)."""
    rows = []
    for kind in sorted(set(kinds)):
        chosen = torch.tensor([k == kind for k in kinds])
        rows.append((kind, int(chosen.sum()),
                     float((predictions[chosen] == labels[chosen]).float().mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="demo_data/manifest.csv")
    parser.add_argument("--cache", default=".cache/selip")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--boost", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adc-percentile", type=float, default=100.0,
                        help="clip ADC volumes at this percentile of their own (100: as cached)")
    parser.add_argument("--intensity", choices=INTENSITY_SCHEMES, default="median",
                        help="the cached volumes' intensity scheme (run selip prepare with it)")
    parser.add_argument("--norm", choices=NORMS, default="group",
                        help="the encoder's normalisation layers")
    parser.add_argument("--per-sequence-head", action="store_true",
                        help="one linear head per sequence instead of one shared head")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    datamodule = SelipDataModule(manifest=args.manifest, cache_dir=args.cache,
                                 sequences=_SEQUENCES, batch_size=args.batch, num_workers=0,
                                 max_length=64, require_mask=True, progress=False,
                                 intensity=args.intensity)
    datamodule.setup("fit")
    truth = load_truth(Path(args.manifest).parent)
    train_x, train_y, _, train_s = load_split(datamodule, "train", truth, args.boost,
                                               args.adc_percentile)
    val_x, val_y, val_kinds, val_s = load_split(datamodule, "val", truth, args.boost,
                                                   args.adc_percentile)
    majority = float(torch.bincount(val_y).max()) / len(val_y)
    print(f"{args.manifest}: {len(train_y)} training pairs ({int(train_y.sum())} show a "
          f"lesion), {len(val_y)} validation pairs; majority rate {majority:.3f}; "
          f"boost {args.boost}, lr {args.lr}, ADC clipped at its "
          f"{args.adc_percentile:g}th percentile, intensity {args.intensity}, norm "
          f"{args.norm}, seed {args.seed}, "
          f"{'a head per sequence' if args.per_sequence_head else 'one shared head'}")
    encoder = ImageEncoder(ImageEncoderConfig(depth=10, width=16, anisotropic_stem=False,
                                              norm=args.norm))
    head = Head(encoder.out_features, len(datamodule.sequences), args.per_sequence_head)
    optimiser = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=args.lr,
                                  weight_decay=0.05)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    recent: deque[torch.Tensor] = deque(maxlen=8)  # PreciseBatchNorm's default
    for step in range(1, args.steps + 1):
        index = torch.randint(0, len(train_y), (args.batch,), generator=generator)
        flip = torch.rand(args.batch, generator=generator) < 0.5
        images = train_x[index]
        images[flip] = images[flip].flip(-1)  # the label does not depend on the side
        recent.append(images)
        loss = nn.functional.cross_entropy(head(encoder(images), train_s[index]),
                                           train_y[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0:
            predictions = predict(encoder, head, val_x, val_s, recent)
            print(f"step {step:4d}  train loss {loss.item():.3f}  val accuracy "
                  f"{float((predictions == val_y).float().mean()):.3f}  (majority "
                  f"{majority:.3f})  {time.perf_counter() - start:.0f} s", flush=True)
    print("val accuracy at the last step, per visible signature (none = nothing shows):")
    for kind, count, value in per_signature(predictions, val_y, val_kinds):
        print(f"  {kind:<28} {count:3d} pairs  {value:.3f}")


if __name__ == "__main__":
    main()
