"""Hostile input: work grows linearly with the message, whatever it repeats or nests.

Work is counted, not timed: the Python lines the inspector runs (and the overlap rule alone,
over one long chain of overlapping candidates), the markup the HTML parser is given at once.
`make bench` times the same shapes at 1 MB (area `inspection`).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from graphtap.inspection import MAX_FINDINGS, MAX_POSITIONS, Inspector
from graphtap.inspection import text as text_module
from graphtap.inspection.engine import Candidate, _resolve_overlaps, _resolve_pairwise
from graphtap.inspection.findings import Finding
from graphtap.inspection.text import PARSE_PIECE, html_to_text
from graphtap.simulation.values import luhn_complete

# (kind, unit): the unit repeated to the message's size.
SHAPES = {
    "card numbers": ("text", "4111 1111 1111 1111 "),
    "password runs": ("text", "password: "),
    "IBANs": ("text", "DE89 3704 0044 0532 0130 00 "),
    "keywords around every number": ("text", "ssn 536-22-1844 "),
    "separators": ("text", "- "),
    "digits and spaces": ("text", "1 "),
    "nested tables": ("html", "<table><tr><td>"),
    "nested divs": ("html", "<div>"),
    "misnested formatting": ("html", "<u><i><b><s>x</u>"),
}
# Python lines per character of input, at most, for any shape (about 10 today).
LINES_PER_CHAR = 16


def _lines_run(function: Callable[..., Any], *args: Any) -> int:
    """Python lines executed by `function(*args)`: the work done, deterministic."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    previous = sys.gettrace()  # a coverage tracer, say: put back afterwards
    sys.settrace(lambda frame, event, arg: local)
    try:
        function(*args)
    finally:
        sys.settrace(previous)
    return count


def _document(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


@pytest.mark.parametrize("shape", SHAPES)
def test_work_grows_linearly_with_the_message(inspector: Inspector, shape: str) -> None:
    kind, unit = SHAPES[shape]
    inspect = inspector.inspect_html if kind == "html" else inspector.inspect_text
    small, large = (_lines_run(inspect, _document(unit, size)) for size in (16_384, 65_536))
    assert large <= 4.4 * max(small, 100)  # four times the text, four times the work
    assert large <= LINES_PER_CHAR * 65_536


def test_repeated_values_are_all_counted(inspector: Inspector) -> None:
    result = inspector.inspect_text(_document("4111 1111 1111 1111 ", 65_536))
    (finding,) = result.findings
    assert finding.count == 65_536 // 20  # every whole one (the last is cut short)
    assert len(finding.positions) == MAX_POSITIONS
    assert result.truncated
    assert result.finding_total == 1


def _overlap_work(count: int) -> int:
    """Candidates chained by overlaps from three rules, all in one cluster."""
    rng = random.Random(count)
    candidates = [
        Candidate(i % 3, 7 * i, 7 * i + 12, "v", rng.choice((65, 75, 85)), rng.randrange(3))
        for i in range(count)
    ]
    return _lines_run(_resolve_overlaps, candidates)


def test_one_long_chain_of_overlaps_is_resolved_in_n_log_n() -> None:
    small, large = _overlap_work(2_000), _overlap_work(8_000)
    assert large <= 4.8 * small  # n log n: 4.4 times; comparing every pair: 16 times


_spans = st.lists(
    st.tuples(
        st.integers(0, 3),  # rule
        st.integers(0, 120),  # start
        st.integers(1, 25),  # length
        st.sampled_from((65, 75, 85)),
        st.integers(0, 3),  # keyword distance
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_spans)
def test_the_cluster_sweep_chooses_what_comparing_every_pair_chooses(
    spans: list[tuple[int, int, int, int, int]],
) -> None:
    candidates = [
        Candidate(rule, start, start + length, "v", confidence, distance)
        for rule, start, length, confidence, distance in spans
    ]
    resolved = _resolve_overlaps(candidates) if len(candidates) > 1 else candidates
    expected = _resolve_pairwise(candidates) if len(candidates) > 1 else candidates
    assert [id(c) for c in resolved] == [id(c) for c in expected]


def test_the_parser_never_reads_more_than_one_piece_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lengths: list[int] = []

    def spy(html: str) -> Any:
        lengths.append(len(html))
        return LexborHTMLParser(html)

    monkeypatch.setattr(text_module, "LexborHTMLParser", spy)
    nested = _document("<table><tr><td>", 262_144)
    html_to_text(nested)
    assert max(lengths) <= PARSE_PIECE
    assert sum(lengths) >= len(nested)  # every character read (marks added before blocks)
    lengths.clear()
    # One tag longer than a piece: cut too, its far attributes then read as text.
    attributes = "<p>&#49;<a " + " ".join(f"data-{i}=x" for i in range(40_000)) + ">2</a>"
    extracted = html_to_text(attributes)
    assert (extracted.lstrip()[0], extracted[-1]) == ("1", "2")
    assert max(lengths) <= PARSE_PIECE
    lengths.clear()
    # A long mail of ordinary markup (few tags for its length) is still read in one parse.
    row = "<tr><td>" + "quarterly numbers attached, " * 20 + "&#8212;</td></tr>"
    mail = "<table>" + row * 100 + "</table>"
    assert len(mail) > 4 * PARSE_PIECE
    html_to_text(mail)
    assert len(lengths) == 1


def test_pieces_read_as_one_parse_between_closed_tables() -> None:
    row = "<tr><td>4111 <b>1111</b> 1111 1111</td><td>&#49;2/27</td></tr>"
    # (U+0130 lowers to two characters: the cuts must still land where they were found.)
    table = "<p>before \u0130</p><table>" + row * 20 + "</table><div>after &amp; more</div>"
    html = table * 60
    assert len(html) > 4 * PARSE_PIECE
    marked = text_module._BLOCK_TAG.sub(text_module._MARK + "<", html)
    pieces = list(text_module._pieces(marked))
    assert len(pieces) > 4
    assert "".join(pieces) == marked
    assert "".join(map(text_module._parsed_text, pieces)) == text_module._parsed_text(marked)


def _german_iban(account: str) -> str:
    """A valid DE IBAN for an 18-digit bank code and account (mod-97 check digits)."""
    check = 98 - int(account + "131400") % 97  # D = 13, E = 14
    return f"DE{check:02d}{account}"


def test_findings_are_capped_in_order_of_severity_and_all_counted(inspector: Inspector) -> None:
    rng = random.Random(7)
    cards = {luhn_complete("4" + "".join(rng.choices("0123456789", k=14))) for _ in range(150)}
    ibans = {_german_iban("".join(rng.choices("0123456789", k=18))) for _ in range(30)}
    # The IBANs come first and are more confident (85, the cards 65), but cards are high
    # severity by default and IBANs medium: the most severe are listed.
    text = " ".join(sorted(ibans)) + " " + " ".join(sorted(cards))
    result = inspector.inspect_text(text)
    assert result.truncated
    assert len(result.findings) == MAX_FINDINGS
    assert result.finding_total == len(cards) + len(ibans)
    assert {f.type for f in result.findings} == {"credit_card_number"}
    assert result.severity == "high"
    positions = [f.positions[0] for f in result.findings]
    assert positions == sorted(positions)
    assert result.to_dict()["findings_truncated"] is True
    assert result.to_dict()["finding_total"] == len(cards) + len(ibans)


def test_a_message_within_the_caps_is_not_marked(inspector: Inspector) -> None:
    result = inspector.inspect_text("card 4111 1111 1111 1111 and again 4111-1111-1111-1111")
    assert not result.truncated
    assert result.finding_total == 1
    (finding,) = result.findings
    assert isinstance(finding, Finding)
    assert (finding.count, len(finding.positions)) == (2, 2)
