"""Use a trained SeLIP model: load it, embed a folder of volumes, search by a sentence,
classify zero-shot by prompts, and export it for a colleague.

    .venv/bin/python examples/use_trained_model.py \\
        --ckpt runs/demo/version_0/checkpoints/last.ckpt --volumes demo_data/exams

``--volumes`` is searched for ``*flair*.nii.gz`` (``--pattern`` to change it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import selip
from selip.inference import export_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a selip pretraining checkpoint")
    parser.add_argument("--volumes", required=True, help="a folder of NIfTI volumes")
    parser.add_argument("--pattern", default="*flair*.nii.gz")
    parser.add_argument("--out", default="model_export", help="the export folder to write")
    parser.add_argument("--limit", type=int, default=20, help="embed at most this many")
    args = parser.parse_args()

    model = selip.load(args.ckpt)                            # 1. load (no Lightning)
    files = sorted(Path(args.volumes).rglob(args.pattern))[: args.limit]
    if not files:
        raise SystemExit(f"no {args.pattern} under {args.volumes}")
    images = model.encode_images(files)                     # 2. embed a folder
    print(f"embedded {len(files)} volumes: {tuple(images.shape)}")

    query = "left basal ganglia: restricted diffusion"       # 3. search by a sentence
    scores = model.logit_scale * images @ model.encode_texts([query])[0]
    best = scores.argsort(descending=True)[:3]
    print(f"best matches for {query!r}:")
    for i in best.tolist():
        print(f"  {scores[i]:7.3f}  {files[i]}")

    names, probs = model.zero_shot(files[:3], {              # 4. zero-shot by prompts
        "normal": ["No abnormality detected."],
        "lesion": ["left frontal lobe: hyperintense signal",
                   "right thalamus: restricted diffusion"]})
    for path, row in zip(files[:3], probs.tolist(), strict=True):
        print(f"  {path.name}: " + ", ".join(f"{n} {p:.2f}" for n, p in zip(names, row,
                                                                              strict=True)))

    folder = export_model(args.ckpt, args.out)              # 5. export
    again = selip.load(folder)
    print(f"exported to {folder}; max |diff| of its embeddings: "
          f"{(again.encode_images(files[:2]) - images[:2]).abs().max():.2e}")


if __name__ == "__main__":
    main()
