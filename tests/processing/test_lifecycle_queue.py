from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from graphtap.processing.lifecycle import (
    BlockingLifecycle,
    LifecycleEvent,
    LifecycleQueue,
    PoisonedEvent,
)


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


def test_an_event_that_keeps_failing_is_set_aside_as_poison(tmp_path: Path) -> None:
    queue = BlockingLifecycle(LifecycleQueue(tmp_path / "q.sqlite"), max_attempts=3)

    async def scenario() -> list[PoisonedEvent]:
        await queue.put([_event("reauthorizationRequired"), _event("missed", 1)])
        for attempt in range(3):
            failing = next(e for e in await queue.pending() if e.event != "missed")
            await queue.retry_later(failing, f"graph said 403 ({attempt + 1})")
        assert [e.event for e in await queue.pending()] == ["missed"]  # no longer offered
        return await queue.poisoned()

    poisoned = asyncio.run(scenario())
    assert poisoned == [PoisonedEvent("reauthorizationRequired", "sub-1", 3, "graph said 403 (3)")]
    assert queue.queue.counts() == {"missed/pending": 1, "reauthorizationRequired/poison": 1}
    with pytest.raises(ValueError, match="max_attempts"):
        BlockingLifecycle(queue.queue, max_attempts=0)
