from __future__ import annotations

import logging
from pathlib import Path

import pytest

from graphtap.processing.lifecycle import LifecycleEvent, LifecycleQueue


def _event(name: str, index: int = 0, body: bytes = b"{}") -> LifecycleEvent:
    item = {
        "subscriptionId": "sub-1",
        "tenantId": "t",
        "lifecycleEvent": name,
        "clientState": "secret",
    }
    return LifecycleEvent.from_item(item, body=body, index=index, received_at=1.0)


def test_queue_is_durable_deduplicated_and_drops_the_client_state(tmp_path: Path) -> None:
    queue = LifecycleQueue(tmp_path / "q.sqlite")
    assert queue.put([_event("missed"), _event("missed")]) == 1
    assert queue.put([_event("subscriptionRemoved", 1)]) == 1
    queue.close()
    queue = LifecycleQueue(tmp_path / "q.sqlite")
    pending = queue.pending()
    assert [e.event for e in pending] == ["missed", "subscriptionRemoved"]
    assert "clientState" not in pending[0].item
    queue.retry_later(pending[0].key, "graph said 503")
    queue.complete(pending[1].key)
    assert [e.event for e in queue.pending()] == ["missed"]
    assert queue.counts() == {"missed/pending": 1, "subscriptionRemoved/done": 1}


def test_unknown_events_are_logged_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = LifecycleQueue(tmp_path / "q.sqlite")
    with caplog.at_level(logging.WARNING):
        event = _event("somethingNew")
    assert "somethingNew" in caplog.text
    assert not event.is_known
    queue.put([event])
    assert queue.pending()[0].event == "somethingNew"
