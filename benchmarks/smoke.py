"""The small towers of the benchmarks' smoke runs (``learning.py --quick``, ``gpu.py
--cpu_smoke``): a narrow ResNet-10 and a 1-layer text encoder of the same tokenizer, so a
smoke run takes every code path of a real one without training MiniLM on a CPU."""

from __future__ import annotations

import json

SMALL_IMAGE_TOWER = {"depth": 10, "width": 8, "anisotropic_stem": True}
SMALL_TEXT_TOWER = {"pretrained": False, "pooling": "cls", "config_overrides": {
    "num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
    "intermediate_size": 64}}


def small_tower_options() -> list[str]:
    """``selip fit`` options that put both small towers in a pretraining config."""
    return ["--model.init_args.image_encoder", json.dumps(SMALL_IMAGE_TOWER),
            "--model.init_args.text_encoder", json.dumps(SMALL_TEXT_TOWER)]
