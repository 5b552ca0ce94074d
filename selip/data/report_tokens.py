"""The report texts as token tensors: what the datasets hand the text encoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from selip.data.cohort import PreparedCohort
from selip.text.tokenizer import (
    UNKNOWN_TOKEN_WARN_SHARE,
    UnknownTokens,
    load_tokenizer,
    tokenize,
    unknown_tokens,
)


@dataclass(frozen=True)
class ReportTokens:
    """(R, L) ``input_ids`` and ``attention_mask`` of every report text (``report_id``
    indexes the rows), tokenised with ``added_tokens`` appended to the tokenizer's
    vocabulary, and how many of the tokens are [UNK]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    unknown: UnknownTokens
    added_tokens: tuple[str, ...] = ()

    @classmethod
    def of(cls, texts: Sequence[str], text_model: str | None, max_length: int,
           added_tokens: Sequence[str] = ()) -> ReportTokens:
        """Tokenise ``texts`` with ``text_model``'s tokenizer (``None``: the packaged MiniLM)."""
        tokenizer = load_tokenizer(text_model, list(added_tokens))
        input_ids, attention_mask = tokenize(list(texts), tokenizer, max_length)
        return cls(input_ids, attention_mask, unknown_tokens(list(texts), tokenizer),
                   tuple(added_tokens))

    def warning(self) -> str | None:
        """What to do when more than ``UNKNOWN_TOKEN_WARN_SHARE`` of the tokens are [UNK]."""
        return self.unknown.message() if self.unknown.share > UNKNOWN_TOKEN_WARN_SHARE else None


def training_unknown_characters(cohort: PreparedCohort, text_model: str | None) -> list[str]:
    """The characters of the training pairs' texts (mirrored ones included) that
    ``text_model``'s tokenizer maps to [UNK], sorted: the same list on every rank."""
    ids = {i for p in cohort.split("train") for i in (p.report_id, p.mirrored_report_id)}
    texts = [cohort.report_table.texts[i] for i in sorted(ids)]
    return sorted(unknown_tokens(texts, load_tokenizer(text_model)).characters)
