"""The demo's report writer: each finding worded from its truth, as radiologists write.

A report is written in a style drawn for the exam (:mod:`selip.demo.styles`); each
finding then picks its own region name, appearance synonym, size clause and hedge from the
language's phrase banks (:mod:`selip.demo.vocabulary`,
:mod:`selip.demo.vocabulary_zh`). The grammar stays the one selip parses: one
``<location>: <appearance>`` (English) or ``在<location>表现为<appearance>`` (Chinese) per
lesion on every sequence, pertinent negatives as findings without a location after them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from selip.demo.chinese import check_language, render_report_zh
from selip.demo.contrasts import SEQUENCE_NAMES, SEQUENCES
from selip.demo.lesions import SIGNATURES, Lesion
from selip.demo.styles import ReportStyle, draw_style
from selip.demo.vocabulary import (
    APPEARANCE_PHRASES,
    FOCI_SIZE_FORMS,
    HEDGES_AFTER,
    HEDGES_BEFORE,
    HYPER_NOUNS,
    LOCATION_FORMS,
    NEGATIVES,
    NORMAL_TEXTS_EN,
    NUMBER_WORDS,
    REGION_PHRASES,
    SEQUENCE_PHRASES,
    SIZE_FORMS,
    SIZE_JOINS,
    TUMOUR_FALSE_NEGATIVES,
)
from selip.demo.vocabulary_zh import (
    APPEARANCE_PHRASES_ZH,
    FOCI_SIZE_FORMS_ZH,
    HEDGES_ZH,
    HYPER_ZH,
    NEGATIVES_ZH,
    NORMAL_TEXTS_ZH,
    NUMBER_WORDS_ZH,
    REGION_PHRASES_ZH,
    SEQUENCE_PHRASES_ZH,
    SIDE_FORMS_ZH,
    SIZE_FORMS_ZH,
    SIZE_JOINS_ZH,
    TUMOUR_FALSE_NEGATIVES_ZH,
)
from selip.text.reports import Finding, render_report

#: A lesion's size as reported: (longest, second-longest) extent in mm.
Size = tuple[int, int]
_INVISIBLE = "isointense signal"  # no size, no hedge: the lesion does not show


@dataclass(frozen=True)
class WrittenReport:
    """One exam's report as written.

    Attributes:
        findings: sequence -> ``(lesion index, finding)`` in written order, one per lesion.
        negatives: sequence -> the pertinent negatives that close its text.
        normal_text: the normal sentence of a normal exam, else ``None``.
    """

    findings: dict[str, tuple[tuple[int, Finding], ...]]
    negatives: dict[str, tuple[str, ...]]
    normal_text: str | None

    def pieces(self, sequence: str) -> list[Finding]:
        """The findings of ``sequence`` then its negatives (as findings without location)."""
        return ([f for _, f in self.findings.get(sequence, ())]
                + [Finding("", n) for n in self.negatives.get(sequence, ())])

    def render(self, language: str) -> str:
        """English free text in the section grammar, or the authors' Chinese JSON."""
        pieces = {s: self.pieces(s) for s in SEQUENCES}
        if check_language(language) == "zh":
            return render_report_zh(pieces, SEQUENCE_NAMES,
                                    normal_text=self.normal_text or NORMAL_TEXTS_ZH[0])
        return render_report(pieces, SEQUENCE_NAMES,
                             normal_text=self.normal_text or NORMAL_TEXTS_EN[0])


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _count(lesion: Lesion, words: Sequence[str]) -> str:
    n = len(lesion.blobs)
    return words[min(n, len(words)) - 1]


# -- English ----------------------------------------------------------------------------
def _location_en(lesion: Lesion, style: ReportStyle, rng: np.random.Generator) -> str:
    phrase = _pick(REGION_PHRASES[lesion.region], rng)
    if "{side}" in phrase:
        text = phrase.format(side=lesion.side)
    else:
        form = LOCATION_FORMS[style.location_form % len(LOCATION_FORMS)]
        text = form.format(side=lesion.side, region=phrase)
    return _capital(text, style)


def _capital(text: str, style: ReportStyle) -> str:
    return text[:1].upper() + text[1:] if style.capitalise else text


def _size(lesion: Lesion, size: Size, style: ReportStyle, forms: tuple[str, ...],
          foci_forms: tuple[str, ...]) -> str:
    """The lesion's size in the style's form of ``forms`` (``foci_forms`` for the
    several small foci of demyelination); both languages."""
    long, short = size
    if lesion.kind == "demyelination":
        return foci_forms[style.size_form % len(foci_forms)].format(long=long)
    return forms[style.size_form % len(forms)].format(
        long=long, short=short, cm=f"{long / 10:.1f}")


@dataclass(frozen=True)
class _AppearanceWords:
    """One language's phrase banks for a finding's appearance clause."""

    phrases: dict[str, tuple[str, ...]]
    sequence_phrases: dict[tuple[str, str], tuple[str, ...]]
    hyper: tuple[str, ...]
    number_words: Sequence[str]
    size_joins: tuple[str, ...]
    size_forms: tuple[str, ...]
    foci_size_forms: tuple[str, ...]


def _appearance(words: _AppearanceWords, hedge: Callable[[str, Lesion, ReportStyle,
                                                         np.random.Generator], str],
                lesion: Lesion, sequence: str, size: Size, style: ReportStyle,
                rng: np.random.Generator) -> str:
    """The appearance clause of ``lesion`` on ``sequence``: a synonym, then maybe a size
    and a hedge (none for a lesion that does not show). The draws from ``rng`` are the
    same in every language — the cohort's reports depend on their order."""
    canonical = SIGNATURES[lesion.kind].appearance[sequence]
    options = words.phrases[canonical] + words.sequence_phrases.get((canonical, sequence), ())
    name = SEQUENCE_NAMES[sequence]
    hyper = _pick(words.hyper, rng).format(seq=name)
    phrase = _pick(options, rng).format(seq=name, hyper=hyper,
                                        count=_count(lesion, words.number_words))
    if canonical == _INVISIBLE:
        return phrase
    if rng.random() < style.size_rate:
        join = words.size_joins[style.size_join % len(words.size_joins)]
        phrase = join.format(phrase=phrase, size=_size(lesion, size, style, words.size_forms,
                                                       words.foci_size_forms))
    if rng.random() < style.hedge_rate:
        phrase = hedge(phrase, lesion, style, rng)
    return phrase


_WORDS_EN = _AppearanceWords(APPEARANCE_PHRASES, SEQUENCE_PHRASES, HYPER_NOUNS, NUMBER_WORDS,
                             SIZE_JOINS, SIZE_FORMS, FOCI_SIZE_FORMS)
_WORDS_ZH = _AppearanceWords(APPEARANCE_PHRASES_ZH, SEQUENCE_PHRASES_ZH, HYPER_ZH,
                             NUMBER_WORDS_ZH, SIZE_JOINS_ZH, SIZE_FORMS_ZH, FOCI_SIZE_FORMS_ZH)


def _hedge_en(phrase: str, lesion: Lesion, style: ReportStyle,
              rng: np.random.Generator) -> str:
    if style.hedge_before:
        return f"{_pick(HEDGES_BEFORE[lesion.kind], rng)} {phrase}"
    return f"{phrase}, {_pick(HEDGES_AFTER[lesion.kind], rng)}"


def _hedge_zh(phrase: str, lesion: Lesion, style: ReportStyle,
              rng: np.random.Generator) -> str:
    return f"{phrase}（{_pick(HEDGES_ZH[lesion.kind], rng)}）"


def _appearance_en(lesion: Lesion, sequence: str, size: Size, style: ReportStyle,
                   rng: np.random.Generator) -> str:
    return _appearance(_WORDS_EN, _hedge_en, lesion, sequence, size, style, rng)


def _appearance_zh(lesion: Lesion, sequence: str, size: Size, style: ReportStyle,
                   rng: np.random.Generator) -> str:
    return _appearance(_WORDS_ZH, _hedge_zh, lesion, sequence, size, style, rng)


# -- Chinese ----------------------------------------------------------------------------
def _location_zh(lesion: Lesion, style: ReportStyle, rng: np.random.Generator) -> str:
    sides = SIDE_FORMS_ZH[style.location_form % len(SIDE_FORMS_ZH)]
    return sides[lesion.side] + _pick(REGION_PHRASES_ZH[lesion.region], rng)


# -- the report -------------------------------------------------------------------------
def _negatives(lesions: Sequence[Lesion], style: ReportStyle, language: str,
               rng: np.random.Generator) -> tuple[str, ...]:
    """The pertinent negatives that close the report; none a tumour would contradict."""
    pool: tuple[str, ...] = NEGATIVES_ZH if language == "zh" else NEGATIVES
    false = TUMOUR_FALSE_NEGATIVES_ZH if language == "zh" else TUMOUR_FALSE_NEGATIVES
    if any(lesion.kind == "tumour" for lesion in lesions):
        pool = tuple(n for n in pool if n not in false)
    chosen = rng.choice(len(pool), size=min(style.negatives, len(pool)), replace=False)
    return tuple(pool[int(i)] for i in chosen)


def write_report(lesions: Sequence[Lesion], sizes: Sequence[Size], rng: np.random.Generator,
                 language: str = "en") -> WrittenReport:
    """Write an exam's report in ``language`` (``en`` or ``zh``).

    Args:
        lesions: the exam's lesions (none for a normal exam).
        sizes: per lesion, its (longest, second-longest) extent in mm.
        rng: the exam's report stream; the style is its first draw.
        language: ``en`` or ``zh``.

    Returns:
        The written findings per sequence (one per lesion on every sequence), the
        pertinent negatives, or for a normal exam one of the normal sentences.
    """
    language = check_language(language)
    style = draw_style(rng)
    if not lesions:
        normals = NORMAL_TEXTS_ZH if language == "zh" else NORMAL_TEXTS_EN
        return WrittenReport({}, {}, normals[style.normal % len(normals)])
    location, appearance = ((_location_zh, _appearance_zh) if language == "zh"
                            else (_location_en, _appearance_en))
    order = list(range(len(lesions)))[::-1 if style.reverse else 1]
    findings = {}
    for sequence in SEQUENCES:
        findings[sequence] = tuple(
            (i, Finding(location(lesions[i], style, rng),
                        appearance(lesions[i], sequence, sizes[i], style, rng)))
            for i in order)
    negatives = _negatives(lesions, style, language, rng)
    if language == "en":
        negatives = tuple(_capital(n, style) for n in negatives)
    return WrittenReport(findings, {style.negative_line: negatives} if negatives else {},
                         None)
