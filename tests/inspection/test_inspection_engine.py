"""Engine invariants that keep the two engines, and the fast paths, honest."""

from __future__ import annotations

import random

import pytest

from graphtap.inspection.engine import PythonEngine, build_engine, hyperscan_available
from graphtap.inspection.rules import RULES
from graphtap.inspection.text import html_to_text
from graphtap.simulation.corpus import labeled_corpus, labeled_message


def _texts() -> list[str]:
    texts = [html_to_text(m.html) for m in labeled_corpus(seed=41, count=600)]
    rng = random.Random(5)
    texts += [
        html_to_text(labeled_message(rng, sensitive=True, length="long").html) for _ in range(5)
    ]
    texts += ["1234 5678 9012 3456 7", "A12345678 B1234567", "12 345 678 901-23-4567", ""]
    return texts


def test_number_runs_find_what_a_full_scan_finds() -> None:
    """The one-pass number path equals `finditer` over the whole text, rule by rule."""
    engine = PythonEngine(RULES)
    numeric = [i for i, rule in enumerate(RULES) if rule.numeric]
    assert len(numeric) == 5
    for text in _texts():
        for index in numeric:
            expected = [
                m.span("v")
                for m in engine._patterns[index].finditer(text)
                if RULES[index].validate(m.group("v"))
            ]
            found: list = []  # type: ignore[type-arg]
            engine._numeric_matches(text, [index], found)
            assert [(m.start, m.end) for m in found] == expected, (RULES[index].type, text)


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not importable here")
def test_number_windows_from_hyperscan_find_what_a_full_scan_finds() -> None:
    engine = build_engine(RULES, "hyperscan")
    for text in _texts():
        engine.find(text)
        ends = engine._ends  # type: ignore[attr-defined]
        for index, pattern in enumerate(engine._patterns):
            if not RULES[index].numeric:
                continue
            expected = [m.span("v") for m in pattern.finditer(text)]
            if not expected:
                continue
            assert index in ends, (RULES[index].type, text)
            found: list = []  # type: ignore[type-arg]
            engine._matches_near(text, index, ends[index], found)
            validated = [s for s in expected if RULES[index].validate(text[s[0] : s[1]])]
            assert [(m.start, m.end) for m in found] == validated, (RULES[index].type, text)


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not importable here")
def test_hyperscan_fires_whenever_regex_matches() -> None:
    """Prefilter mode may over-fire, never under-fire: else the engines would disagree."""
    engine = build_engine(RULES, "hyperscan")
    for text in _texts():
        engine.find(text)
        fired = engine._fired  # type: ignore[attr-defined]
        for index, pattern in enumerate(engine._patterns):
            if pattern.search(text):
                assert index in fired, (RULES[index].type, text)


def test_unknown_engine_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="engine"):
        build_engine(RULES, "re2")  # type: ignore[arg-type]


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not importable here")
def test_auto_falls_back_when_the_cpu_is_unsupported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import hyperscan

    from graphtap.inspection import engine

    def unsupported(rules: object) -> object:
        raise hyperscan.ArchitectureError("no SSSE3")

    monkeypatch.setattr(engine, "_hyperscan_database", unsupported)
    assert isinstance(build_engine(RULES, "auto"), PythonEngine)
    assert "pure-Python" in caplog.text
    with pytest.raises(hyperscan.ArchitectureError):
        build_engine(RULES, "hyperscan")
