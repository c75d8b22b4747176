"""Quality on examples written apart from the simulator (values from issuers' documentation
and specimens, labeled by hand): the corpus and the rules cannot drift together here."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from graphtap.inspection import Inspector
from graphtap.inspection.rules import TYPES
from graphtap.simulation.corpus import LabeledMessage
from graphtap.simulation.quality import load_examples, measure
from tests.inspection.conftest import KEY

EXAMPLES = Path(__file__).parent / "examples" / "independent.toml"


@pytest.fixture(scope="module")
def examples() -> list[LabeledMessage]:
    return load_examples(EXAMPLES)


def test_every_type_has_positives_and_negatives(examples: list[LabeledMessage]) -> None:
    import tomllib

    document = tomllib.loads(EXAMPLES.read_text(encoding="utf-8"))
    positives = Counter(entry["type"] for entry in document["positive"])
    negatives = Counter(entry["imitates"] for entry in document["negative"])
    assert {kind for kind in TYPES if positives[kind] < 2} == set()
    assert {kind for kind in TYPES if negatives[kind] < 1} == set()
    assert len(examples) == sum(positives.values()) + sum(negatives.values())


def test_every_type_is_precise_and_complete(
    inspector: Inspector, examples: list[LabeledMessage]
) -> None:
    report = measure(inspector, examples, hash_key=KEY)
    failing = {
        kind: (round(score.precision, 3), round(score.recall, 3))
        for kind, score in report.scores.items()
        if score.precision < 0.99 or score.recall < 0.98
    }
    assert not failing, f"{failing}; misses: {report.misses}"


def test_engines_agree_on_the_examples(
    inspectors: dict[str, Inspector], examples: list[LabeledMessage]
) -> None:
    hyperscan, python = inspectors["hyperscan"], inspectors["python"]
    assert [
        m.id for m in examples if hyperscan.inspect_html(m.html) != python.inspect_html(m.html)
    ] == []


def test_a_bad_example_file_names_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "examples.toml"
    bad.write_text('[[positive]]\ntype = "credit_card"\ntext = "{v}"\nvalue = "4111"\n')
    with pytest.raises(ValueError, match=r"positive 0: unknown type 'credit_card'"):
        load_examples(bad)
