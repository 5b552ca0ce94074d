"""Sequence rules: which DICOM series becomes which selip sequence, from headers only.

The rules are a YAML file (``selip/importer/sequence_rules.yaml`` is shipped and
documents the format; ``--rules FILE`` replaces or, with ``extends: default``, extends
it). :func:`classify` gives a series' :class:`Claim` — the first rule whose conditions all
hold — and :func:`choose` settles a study's series that claim the same sequence: the
earlier rule wins, then the ``prefer`` criteria in order; a tie left after them is
reported, never broken at random.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from selip.importer.series import Series
from selip.text.sequences import KNOWN_SEQUENCES

DEFAULT_RULES = "default"
_CONDITION_KEYS = ("description", "not_description", "image_type", "not_image_type",
                   "scanning_sequence", "sequence_variant", "inversion_time", "echo_time",
                   "repetition_time", "b_value", "contrast", "plane")
_RULE_KEYS = ("name", "sequence", "skip", *_CONDITION_KEYS)
_PLANES = ("axial", "coronal", "sagittal")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, rule and field."""


def _ordered_by_original(series: Series) -> int:
    return 1 if "ORIGINAL" in series.image_type else 0


def _ordered_by_axial(series: Series) -> int:
    return 1 if series.plane == "axial" else 0


def _ordered_by_slices(series: Series) -> int:
    return series.slice_count


def _ordered_by_latest(series: Series) -> int:
    return series.series_number if series.series_number is not None else -1


#: prefer criterion → a score; the higher score wins.
PREFERENCES: dict[str, Callable[[Series], int]] = {
    "original": _ordered_by_original,
    "axial": _ordered_by_axial,
    "more_slices": _ordered_by_slices,
    "latest": _ordered_by_latest,
}


@dataclass(frozen=True)
class Bounds:
    """An inclusive [low, high] range on a header number; ``None`` = unbounded."""

    low: float | None = None
    high: float | None = None

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.low is None or value >= self.low) and (self.high is None
                                                            or value <= self.high)


@dataclass(frozen=True)
class Rule:
    """One rule: its conditions and what it does with a series that meets them all."""

    name: str
    sequence: str | None  # None: a skip rule
    skip: str | None = None
    description: tuple[re.Pattern[str], ...] = ()
    not_description: tuple[re.Pattern[str], ...] = ()
    image_type: frozenset[str] = frozenset()
    not_image_type: frozenset[str] = frozenset()
    scanning_sequence: frozenset[str] = frozenset()
    sequence_variant: frozenset[str] = frozenset()
    numbers: tuple[tuple[str, Bounds], ...] = ()  # (series attribute, bounds)
    contrast: bool | None = None
    plane: frozenset[str] = frozenset()

    def matches(self, series: Series) -> bool:
        """Whether every condition of the rule holds for ``series``."""
        names = [text for text in (series.description, series.protocol) if text]
        if self.description and not any(p.search(t) for p in self.description for t in names):
            return False
        if any(p.search(t) for p in self.not_description for t in names):
            return False
        if self.image_type and not self.image_type & set(series.image_type):
            return False
        if self.not_image_type & set(series.image_type):
            return False
        if self.scanning_sequence and not self.scanning_sequence & set(
                series.scanning_sequence):
            return False
        if self.sequence_variant and not self.sequence_variant & set(series.sequence_variant):
            return False
        for attribute, bounds in self.numbers:
            if not bounds.holds(getattr(series, attribute)):
                return False
        if self.contrast is not None and self.contrast != bool(series.contrast_agent.strip()):
            return False
        return not self.plane or series.plane in self.plane


@dataclass(frozen=True)
class Claim:
    """What the rules make of one series: a ``sequence``, or a ``skip`` reason, by
    ``rule`` (its position ``order`` in the rules; lower wins); all ``None`` when no rule
    claims it."""

    sequence: str | None = None
    skip: str | None = None
    rule: str | None = None
    order: int = -1

    @property
    def unclaimed(self) -> bool:
        return self.rule is None


@dataclass
class SequenceRules:
    """The ordered rules and the tie-break criteria, as loaded from ``source``."""

    rules: list[Rule]
    prefer: list[str]
    source: str = DEFAULT_RULES

    def classify(self, series: Series) -> Claim:
        """The first rule that claims ``series`` (:class:`Claim`; unclaimed when none)."""
        for order, rule in enumerate(self.rules):
            if rule.matches(series):
                return Claim(rule.sequence, rule.skip, rule.name, order)
        return Claim()


@dataclass
class Choice:
    """The outcome of one sequence of one study: the ``chosen`` series (``None`` when the
    candidates tied), every candidate, and a log line when there was more than one."""

    sequence: str
    chosen: Series | None
    candidates: list[Series] = field(default_factory=list)
    note: str = ""


def choose(sequence: str, claimed: list[tuple[Series, Claim]], prefer: Iterable[str]
           ) -> Choice:
    """The series to import for ``sequence`` among the ``claimed`` ones (at least one).

    The lowest rule order wins; among series of that rule, each ``prefer`` criterion in
    turn keeps those with the best score. A tie left after all of them is ambiguous.
    """
    best_order = min(claim.order for _, claim in claimed)
    remaining = [series for series, claim in claimed if claim.order == best_order]
    candidates = [series for series, _ in claimed]
    decided_by: list[str] = []
    if len(remaining) < len(claimed):
        winner = next(claim.rule for _, claim in claimed if claim.order == best_order)
        decided_by.append(f"rule '{winner}'")
    for criterion in prefer:
        if len(remaining) == 1:
            break
        score = PREFERENCES[criterion]
        top = max(score(s) for s in remaining)
        kept = [s for s in remaining if score(s) == top]
        if len(kept) < len(remaining):
            decided_by.append(criterion)
        remaining = kept
    if len(candidates) == 1:
        return Choice(sequence, candidates[0], candidates)
    others = ", ".join(s.label for s in candidates if s is not remaining[0])
    if len(remaining) > 1:
        tied = ", ".join(s.label for s in remaining)
        return Choice(sequence, None, candidates,
                      f"{sequence}: {len(remaining)} candidates and no rule to choose "
                      f"between them ({tied}); add a 'prefer' criterion or a rule")
    return Choice(sequence, remaining[0], candidates,
                  f"{sequence}: chose {remaining[0].label} over {others} "
                  f"(by {', '.join(decided_by)})")


# -- loading ---------------------------------------------------------------------------------
def _patterns(source: str, rule: str, key: str, value: Any) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for text in _strings(source, rule, key, value):
        try:
            compiled.append(re.compile(text, re.IGNORECASE))
        except re.error as err:
            raise RulesError(f"{source}: rule '{rule}', {key}: {text!r} is not a valid "
                             f"regular expression ({err})") from None
    return tuple(compiled)


def _strings(source: str, rule: str, key: str, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str | int | float) for v in values):
        raise RulesError(f"{source}: rule '{rule}', {key}: expected a string or a list of "
                         f"strings, got {value!r}")
    return [str(v) for v in values]


def _bounds(source: str, rule: str, key: str, value: Any) -> Bounds:
    if not isinstance(value, dict) or not value or set(value) - {"min", "max"}:
        raise RulesError(f"{source}: rule '{rule}', {key}: expected {{min: N, max: N}} "
                         f"(either optional), got {value!r}")
    try:
        return Bounds(None if value.get("min") is None else float(value["min"]),
                      None if value.get("max") is None else float(value["max"]))
    except (TypeError, ValueError):
        raise RulesError(f"{source}: rule '{rule}', {key}: min and max must be numbers, "
                         f"got {value!r}") from None


def _rule(source: str, position: int, entry: Any) -> Rule:
    if not isinstance(entry, dict):
        raise RulesError(f"{source}: rule {position} must be a mapping, got {entry!r}")
    name = str(entry.get("name") or f"rule {position}")
    unknown = sorted(set(entry) - set(_RULE_KEYS))
    if unknown:
        raise RulesError(f"{source}: rule '{name}': unknown field(s) {', '.join(unknown)} "
                         f"(known: {', '.join(_RULE_KEYS)})")
    sequence, skip = entry.get("sequence"), entry.get("skip")
    if (sequence is None) == (skip is None):
        raise RulesError(f"{source}: rule '{name}' needs exactly one of 'sequence' (the "
                         f"sequence it claims) or 'skip' (the reason it drops the series)")
    if sequence is not None and str(sequence).lower() not in KNOWN_SEQUENCES:
        raise RulesError(f"{source}: rule '{name}': unknown sequence {sequence!r} (known: "
                         f"{', '.join(KNOWN_SEQUENCES)})")
    if not any(key in entry for key in _CONDITION_KEYS):
        raise RulesError(f"{source}: rule '{name}' has no condition, so it would claim every "
                         f"series; give at least one of {', '.join(_CONDITION_KEYS)}")
    plane = {str(p).lower() for p in _strings(source, name, "plane", entry["plane"])} \
        if "plane" in entry else set()
    if plane - set(_PLANES):
        raise RulesError(f"{source}: rule '{name}', plane: expected {', '.join(_PLANES)}, "
                         f"got {', '.join(sorted(plane - set(_PLANES)))}")
    contrast = entry.get("contrast")
    if contrast is not None and not isinstance(contrast, bool):
        raise RulesError(f"{source}: rule '{name}', contrast: expected true or false, "
                         f"got {contrast!r}")

    def tokens(key: str) -> frozenset[str]:
        return frozenset(s.upper() for s in _strings(source, name, key, entry[key])) \
            if key in entry else frozenset()

    numbers = tuple((attribute, _bounds(source, name, key, entry[key]))
                    for key, attribute in (("inversion_time", "inversion_time"),
                                           ("echo_time", "echo_time"),
                                           ("repetition_time", "repetition_time"),
                                           ("b_value", "max_b_value")) if key in entry)
    return Rule(
        name=name, sequence=None if sequence is None else str(sequence).lower(),
        skip=None if skip is None else str(skip),
        description=_patterns(source, name, "description", entry["description"])
        if "description" in entry else (),
        not_description=_patterns(source, name, "not_description", entry["not_description"])
        if "not_description" in entry else (),
        image_type=tokens("image_type"), not_image_type=tokens("not_image_type"),
        scanning_sequence=tokens("scanning_sequence"),
        sequence_variant=tokens("sequence_variant"), numbers=numbers, contrast=contrast,
        plane=frozenset(plane))


def _parse(text: str, source: str) -> tuple[list[Rule], list[str], bool]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RulesError(f"{source}: not valid YAML ({err})") from None
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RulesError(f"{source}: expected a mapping with a 'rules:' list")
    unknown = sorted(set(document) - {"version", "prefer", "rules", "extends"})
    if unknown:
        raise RulesError(f"{source}: unknown top-level field(s) {', '.join(unknown)} (known: "
                         f"version, prefer, rules, extends)")
    extends = document.get("extends")
    if extends not in (None, DEFAULT_RULES):
        raise RulesError(f"{source}: extends: only 'default' (the shipped rules) is known, "
                         f"got {extends!r}")
    prefer = [str(p) for p in (document.get("prefer") or [])]
    unknown_prefer = [p for p in prefer if p not in PREFERENCES]
    if unknown_prefer:
        raise RulesError(f"{source}: prefer: unknown criterion {', '.join(unknown_prefer)} "
                         f"(known: {', '.join(PREFERENCES)})")
    rules = [_rule(source, i + 1, entry) for i, entry in enumerate(document["rules"])]
    return rules, prefer, extends == DEFAULT_RULES


def default_rules_text() -> str:
    """The shipped rules file's text."""
    return resources.files("selip.importer").joinpath("sequence_rules.yaml").read_text(
        encoding="utf-8")


def load_rules(path: str | Path | None = None) -> SequenceRules:
    """The shipped rules (``path`` ``None``), or the file at ``path`` — on its own, or
    tried before the shipped ones when it says ``extends: default`` (its ``prefer``, when
    given, replaces the shipped one)."""
    default_rules, default_prefer, _ = _parse(default_rules_text(), "selip's sequence rules")
    if path is None:
        return SequenceRules(default_rules, default_prefer)
    path = Path(path)
    if not path.is_file():
        raise RulesError(f"{path}: rules file not found")
    rules, prefer, extends = _parse(path.read_text(encoding="utf-8"), str(path))
    if extends:
        return SequenceRules(rules + default_rules, prefer or default_prefer, str(path))
    return SequenceRules(rules, prefer, str(path))
