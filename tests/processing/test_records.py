"""Records the process pool sends: they arrive equal to what was sent."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from graphtap.processing.pipeline import EventResult
from graphtap.processing.records import pickled_as_fields
from graphtap.processing.sources import SourceEvent
from graphtap.processing.verdicts import Verdict, verdict_key


def _verdict() -> Verdict:
    return Verdict(
        key=verdict_key("t", "chats('c')/messages('1')", "1", "created", "7"),
        tenant_id="t",
        subscription_id="s",
        change_type="created",
        resource="chats('c')/messages('1')",
        message_id="1",
        conversation_id="c",
        version="7",
        sender_id=None,
        content="inspected",
        severity="high",
        findings=({"type": "iban", "confidence": 85, "count": 1, "preview": "****1234"},),
        certificate_id="cert",
        partition="2",
        offset=9,
        processed_at=1.5,
        extra={"label": "x"},
    )


@pytest.mark.parametrize(
    "record",
    [
        SourceEvent("3", 41, b'{"value": []}'),
        _verdict(),
        EventResult("2", 9, notifications=1, verdicts=[_verdict()]),
    ],
    ids=lambda record: type(record).__name__,
)
def test_records_cross_process_boundaries_unchanged(record: object) -> None:
    for protocol in (2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        sent = pickle.dumps(record, protocol=protocol)
        assert pickle.loads(sent) == record  # noqa: S301 (our own bytes)


def test_a_single_field_record_is_refused() -> None:
    @dataclass(slots=True)
    class One:
        value: int

    with pytest.raises(TypeError, match="two or more fields"):
        pickled_as_fields(One)
