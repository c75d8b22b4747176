"""Precision and recall per type on a labeled corpus, matched value by value.

A finding is a true positive when its type and value hash equal a planted value's (the planted
value normalised and hashed with the same key), so a finding on a decoy sitting beside a true
value still counts as the false positive it is.
"""

from __future__ import annotations

import html
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from graphtap.inspection import InspectionResult, Inspector
from graphtap.inspection.findings import ValueHasher
from graphtap.inspection.rules import RULES, TYPES
from graphtap.inspection.text import normalise
from graphtap.simulation.corpus import LabeledMessage, PlantedValue

_NORMALISERS = {rule.type: rule.normalise for rule in RULES}


@dataclass
class Score:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        planted = self.true_positives + self.false_negatives
        return self.true_positives / planted if planted else 1.0


@dataclass
class QualityReport:
    scores: dict[str, Score] = field(default_factory=lambda: {kind: Score() for kind in TYPES})
    messages: int = 0
    # (message id, type, "false positive" | "false negative") for the first few misses
    misses: list[tuple[str, str, str]] = field(default_factory=list)


def planted_hash(hasher: ValueHasher, kind: str, value: str) -> str:
    return hasher(_NORMALISERS[kind](normalise(value)))


def measure(
    inspector: Inspector,
    messages: Iterable[LabeledMessage],
    *,
    hash_key: bytes,
    inspect: Callable[[str], InspectionResult] | None = None,
    keep_misses: int = 20,
) -> QualityReport:
    """Run every message through `inspect` (default `inspector.inspect_html`) and score it."""
    hasher = ValueHasher(hash_key)
    run = inspect or inspector.inspect_html
    report = QualityReport()
    for message in messages:
        report.messages += 1
        expected = {(p.type, planted_hash(hasher, p.type, p.value)) for p in message.planted}
        found = {(f.type, f.value_hash) for f in run(message.html).findings}
        for kind, _ in found & expected:
            report.scores[kind].true_positives += 1
        for kind, _ in found - expected:
            report.scores[kind].false_positives += 1
            if len(report.misses) < keep_misses:
                report.misses.append((message.id, kind, "false positive"))
        for kind, _ in expected - found:
            report.scores[kind].false_negatives += 1
            if len(report.misses) < keep_misses:
                report.misses.append((message.id, kind, "false negative"))
    return report


def load_examples(path: str | Path) -> list[LabeledMessage]:
    """A hand-labeled example file (TOML): `[[positive]]` tables (`type`, `text` with `{v}`,
    `value` as a string or pieces to join) and `[[negative]]` tables (`text`, expected to
    yield nothing). Each becomes one message of plain text (HTML-escaped)."""
    path = Path(path)
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    messages: list[LabeledMessage] = []
    known = set(TYPES)
    for index, entry in enumerate(document.get("positive", [])):
        kind, pieces = entry["type"], entry["value"]
        if kind not in known:
            raise ValueError(f"{path}: positive {index}: unknown type {kind!r}")
        value = pieces if isinstance(pieces, str) else "".join(pieces)
        text = entry["text"].replace("{v}", value)
        messages.append(
            LabeledMessage(f"p{index:04d}", _as_html(text), (PlantedValue(kind, value),))
        )
    for index, entry in enumerate(document.get("negative", [])):
        if entry["imitates"] not in known:
            raise ValueError(f"{path}: negative {index}: unknown type {entry['imitates']!r}")
        messages.append(LabeledMessage(f"n{index:04d}", _as_html(entry["text"]), ()))
    return messages


def _as_html(text: str) -> str:
    """Plain text as a Teams body: escaped, one paragraph per line."""
    return "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in text.split("\n"))
