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
    # Runs long enough to be searched rule by rule, ending where NUMBER_AFTER looks past them.
    run = " ".join(f"4111 1111 1111 1111 536-22-1844 0210000{i:02d} 12 3" for i in range(40))
    card = " 5500-0000-0000-0004"
    texts += [run, run + card + "-a", run + card + ".5", "E12345678 " + run + card + "!"]
    # Matches that start in a long run and end past it, at a letter the run stops at: a
    # Corsican NIR (`2A`), a DNI's check letter, and one a letter after it spoils.
    nirs = "1 84 12 76 451 089 46 2 61 11 13 557 604 83 1 84 12 76 451 089 46"
    texts += [f"NIR list: {nirs} 1 85 05 2A 123 456 33", f"{run} 12345678Z", f"{run} 12345678 ZX"]
    return texts


def test_number_runs_find_what_a_full_scan_finds() -> None:
    """The one-pass number path equals `finditer` over the whole text, rule by rule."""
    engine = PythonEngine(RULES)
    numeric = [i for i, rule in enumerate(RULES) if rule.numeric]
    assert len(numeric) >= 5
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
        if not text.isascii():  # match ends are byte offsets: the engine uses them in ASCII only
            continue
        engine.find(text)
        ends = engine._ends  # type: ignore[attr-defined]
        for index, pattern in enumerate(engine._patterns):
            if not RULES[index].numeric or RULES[index].requires_keyword:
                continue  # (those run near their keywords: see the test below)
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
    """Prefilter mode may over-fire, never under-fire: else the engines would disagree. A rule
    that needs a keyword is represented by its gate, which fires wherever a keyword is."""
    engine = build_engine(RULES, "hyperscan")
    for text in _texts():
        engine.find(text)
        fired = engine._fired  # type: ignore[attr-defined]
        keywords = engine._keywords.scan(text).keywords
        for index, pattern in enumerate(engine._patterns):
            if RULES[index].requires_keyword:
                if index in keywords:
                    gates = {len(RULES) + index, 2 * len(RULES) + index}
                    assert gates & fired, (RULES[index].type, text)
            elif pattern.search(text):
                assert index in fired, (RULES[index].type, text)


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not importable here")
def test_keyword_windows_hold_every_match_a_keyword_supports() -> None:
    """A rule that needs a keyword runs only in windows around its keywords' ends: whatever
    it finds there, next to a keyword, is what a scan of the whole text finds."""
    from graphtap.inspection.engine import _keyword_windows
    from graphtap.inspection.keywords import PROXIMITY

    text = ("filler 12 " * 60) + "SSN 536-22-1844 " + ("more 9 " * 80) + "536 22 1844 end"
    keyword_end = text.index("SSN") + 3
    windows = _keyword_windows(text, [keyword_end + 1])
    (low, high) = windows[0]
    assert low <= keyword_end - 3 - PROXIMITY - 11
    assert high >= keyword_end + PROXIMITY + 11
    assert high == len(text) or text[high].isspace()  # no number cut short at the edge
    assert len(_keyword_windows(text, [10, 20])) == 1  # overlapping windows merge
    # Both engines agree on the SSN next to the keyword and ignore the one far from it.
    for name in ("hyperscan", "python"):
        engine = build_engine(RULES, name)
        found = [(RULES[c.rule].type, c.value) for c in engine.find(text)]
        assert found == [("us_social_security_number", "536-22-1844")], name


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
