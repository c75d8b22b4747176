"""Precision and recall on the labeled Teams corpus, and the two engines agreeing on it.

The targets (`make bench`, 5,000+ messages) are precision >= 0.99 and recall >= 0.98 per
type; this quick run asserts floors a little below, so noise cannot fail CI while a real
regression does.
"""

from __future__ import annotations

import pytest

from graphtap.inspection import Inspector
from graphtap.simulation.corpus import LabeledMessage, labeled_corpus
from graphtap.simulation.quality import measure
from tests.inspection.conftest import KEY

PRECISION_FLOOR = 0.97
RECALL_FLOOR = 0.96


@pytest.fixture(scope="module")
def corpus() -> list[LabeledMessage]:
    # 42 types: a higher share of sensitive messages plants each one 40+ times.
    return list(labeled_corpus(seed=20260101, count=3000, sensitive_share=0.65))


def test_every_type_meets_the_quality_floor(
    inspector: Inspector, corpus: list[LabeledMessage]
) -> None:
    report = measure(inspector, corpus, hash_key=KEY)
    failing = {
        kind: (round(score.precision, 3), round(score.recall, 3))
        for kind, score in report.scores.items()
        if score.precision < PRECISION_FLOOR or score.recall < RECALL_FLOOR
    }
    assert not failing, f"below the floor: {failing}; first misses: {report.misses[:5]}"
    assert all(score.true_positives >= 40 for score in report.scores.values())


def test_engines_report_identical_findings_on_the_corpus(
    inspectors: dict[str, Inspector], corpus: list[LabeledMessage]
) -> None:
    hyperscan, python = inspectors["hyperscan"], inspectors["python"]
    differing = [
        message.id
        for message in corpus
        if hyperscan.inspect_html(message.html) != python.inspect_html(message.html)
    ]
    assert not differing
