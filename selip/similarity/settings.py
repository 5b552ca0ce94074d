"""The report-similarity block of the data settings (``data.similarity:``), and the one
step that reads configs written before the block existed.

A config names the rule and how S is stored in one place::

    data:
      similarity:
        preset: paper          # or english, or the rule's own settings
        mode: auto             # auto | table | per_batch
        top_k: null
        dense_max_mb: 8192
        device_budget_mb: 2048
        block_rows: 512

``similarity: paper`` is short for ``similarity: {preset: paper}``, and ``null`` turns S
off. Releases before the block spelt its fields as flat ``data.similarity_<field>`` keys;
:func:`nest_flat_keys` moves them into the block (configs, the command line, and the run
config a checkpoint records) so that every reader sees one shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from selip.similarity.config import SimilarityConfig, resolve_config
from selip.similarity.sizing import SimilarityMode, TableSizing

#: The flat key of each block field in releases before the block.
FLAT_KEYS: dict[str, str] = {
    "similarity_mode": "mode",
    "similarity_top_k": "top_k",
    "similarity_dense_max_mb": "dense_max_mb",
    "similarity_device_budget_mb": "device_budget_mb",
    "similarity_block_rows": "block_rows",
}


@dataclass(frozen=True)
class SimilaritySettings:
    """Which report similarity S to use and how to store it.

    Args:
        preset: the rule: a preset name (``english``, ``paper``) or its settings.
        mode: ``auto`` (the dense table while it fits ``dense_max_mb``, else
            ``per_batch``), ``table`` (dense, or the approximate top-k table past that
            size) or ``per_batch`` (no table: S computed exactly for each training batch in
            the loader workers; validation and test keep a small table of their own).
        top_k: keep only each report's k most similar reports (a sparse table; other
            pairs count as 0). None: as ``mode`` chooses (top 256 in ``table`` mode past
            ``dense_max_mb``).
        dense_max_mb: the largest dense table (U² float16) to build.
        device_budget_mb: keep the whole table on the training device when it is at most
            this big; otherwise rows are gathered from the memory map.
        block_rows: rows per block when building the table.
    """

    preset: str | SimilarityConfig = "english"
    mode: SimilarityMode = "auto"
    top_k: int | None = None
    dense_max_mb: float = 8192.0
    device_budget_mb: float = 2048.0
    block_rows: int = 512

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"data.similarity.top_k must be >= 1 or null, got {self.top_k}")
        self.sizing(threads=1, progress=False)  # an unknown mode, or top_k with per_batch

    def rule(self, normal_text: str) -> SimilarityConfig:
        """The resolved rule, with ``normal_text`` among the texts that count as normal."""
        config = resolve_config(self.preset)
        if normal_text not in config.normal_texts:
            config = replace(config, normal_texts=(*config.normal_texts, normal_text))
        return config

    def sizing(self, threads: int, progress: bool) -> TableSizing:
        """How :func:`selip.similarity.lookup.open_similarity` stores and builds S."""
        return TableSizing(self.top_k, self.dense_max_mb, self.block_rows, threads, progress,
                           self.mode)


def similarity_settings(value: SimilaritySettings | str | SimilarityConfig | Mapping[str, Any]
                        | None) -> SimilaritySettings | None:
    """The block from what a config or a caller gives: the block, a preset name or rule
    (short for ``{preset: ...}``), a mapping of its fields (a recorded config), or None."""
    if value is None or isinstance(value, SimilaritySettings):
        return value
    if isinstance(value, str | SimilarityConfig):
        return SimilaritySettings(preset=value)
    fields = dict(value)
    preset = fields.get("preset", SimilaritySettings.preset)
    if isinstance(preset, Mapping):
        fields["preset"] = SimilarityConfig(**preset)
    return SimilaritySettings(**fields)


def _rule_given_as_block(block: Mapping[str, Any]) -> bool:
    """Whether a ``similarity:`` mapping is the rule's own settings, as releases before the
    block wrote them (``similarity: {syntax: indel}``), not the block."""
    block_fields = set(SimilaritySettings.__dataclass_fields__)
    return bool(block) and not set(block) & block_fields \
        and set(block) <= set(SimilarityConfig.__dataclass_fields__)


def nest_flat_keys(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A ``data`` section in the block's shape, from one written before the block.

    The flat ``similarity_<field>`` keys move into the block, and a rule given directly as
    ``similarity:`` becomes its ``preset``. Returns the translated section (a copy) and the
    old keys it moved, for the caller's one warning. A field the block already sets wins
    over its flat key; with ``similarity: null`` the flat keys are dropped (no S to size).
    """
    moved = [key for key in FLAT_KEYS if key in data]
    section = {k: v for k, v in data.items() if k not in FLAT_KEYS}
    block = data.get("similarity", SimilaritySettings.preset)
    if isinstance(block, Mapping) and _rule_given_as_block(block):
        block = {"preset": dict(block)}
        moved.append("similarity")
        section["similarity"] = block
    if not moved or block is None:
        return section, moved
    nested = dict(block) if isinstance(block, Mapping) else {"preset": block}
    for key in moved:
        if key in FLAT_KEYS:
            nested.setdefault(FLAT_KEYS[key], data[key])
    section["similarity"] = nested
    return section, moved


def preset_of(value: Any) -> Any:
    """The rule of a recorded ``data.similarity`` value (a block mapping, a preset name or
    None), for display."""
    return value.get("preset", SimilaritySettings.preset) if isinstance(value, Mapping) \
        else value


def flat_keys_message(moved: list[str]) -> str:
    """The one warning for configs that still use flat keys."""
    pairs = ", ".join(f"data.{key} → data.similarity.{FLAT_KEYS.get(key, 'preset')}"
                      for key in moved)
    return (f"{pairs}: the similarity settings now live in one block; read as such this "
            "time — write them under data.similarity: in your config")
