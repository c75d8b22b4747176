"""The lifecycle queue the web hosts share: an Azure Storage queue the stack creates.

Processors on any host enqueue the lifecycle events they meet (`put`, in the commit step,
before the checkpoint); the leader's control plane drains them. A message received is
hidden from other receivers for `visibility` seconds; handled, it is deleted; failed, it is
left to reappear, and Storage counts each delivery (`dequeue_count`). One delivered more
than `max_attempts` times moves to the poison queue, which the status page lists.

Storage queues do not deduplicate: a batch delivered again enqueues its events again, and
with `processor = "both"` the web app and the Function App each enqueue every event. Copies
received together are handed out once and settled together; copies received apart are
handled again, which is idempotent (a renewal, a reconcile, a resync whose replays add no
verdicts): a repeat costs one Graph call, never a wrong state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.storage.queue.aio import QueueClient

from graphtap.processing.lifecycle import MAX_ATTEMPTS, LifecycleEvent, PoisonedEvent

log = logging.getLogger(__name__)

#: Storage's bound on one receive call.
MAX_BATCH = 32


class StorageLifecycleQueue:
    """`SharedLifecycle` over a Storage queue and its poison queue (Entra ID only)."""

    def __init__(
        self,
        account_url: str,
        queue: str,
        poison_queue: str,
        credential: AsyncTokenCredential,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        visibility: int = 120,
        **client_options: Any,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if visibility < 1:
            raise ValueError(f"visibility must be at least 1 s, got {visibility}")
        self.max_attempts = max_attempts
        self.visibility = visibility
        self._queue = QueueClient(account_url, queue, credential=credential, **client_options)
        self._poison = QueueClient(
            account_url, poison_queue, credential=credential, **client_options
        )
        #: Messages received and not yet settled, by event key: (id, pop receipt, deliveries)
        #: of every copy of the event.
        self._held: dict[str, list[tuple[str, str, int]]] = {}
        #: Why each held event last failed here, carried into the poison queue.
        self._errors: dict[str, str] = {}

    async def put(self, events: Sequence[LifecycleEvent]) -> int:
        for event in events:
            await self._queue.send_message(_encode({"event": event.to_dict()}))
        return len(events)

    async def pending(self, limit: int = MAX_BATCH) -> list[LifecycleEvent]:
        """Events to handle, one per key, hidden from other readers for `visibility`.

        Drains run one at a time, so what an earlier drain left unsettled (its lead lost, or
        cancelled) is forgotten here: its receipts are stale, and its messages are offered
        again once their visibility runs out, with new ones."""
        self._held.clear()
        received = []
        pages = self._queue.receive_messages(
            messages_per_page=min(limit, MAX_BATCH),
            visibility_timeout=self.visibility,
            max_messages=limit,
        )
        async for message in pages:
            receipt, deliveries = str(message.pop_receipt), int(message.dequeue_count or 1)
            try:
                event = LifecycleEvent.from_dict(json.loads(message.content)["event"])
            except (ValueError, KeyError, TypeError) as malformed:
                # No handler can ever take it: set aside at once, as it came, with why.
                await self._poison.send_message(
                    _encode({"raw": str(message.content)[:4096], "last_error": str(malformed)})
                )
                await self._queue.delete_message(message.id, receipt)
                log.warning("lifecycle queue: a message that is no event set aside: %s", malformed)
                continue
            if deliveries > self.max_attempts:
                # Delivered too often without being settled: its handler died each time.
                why = self._errors.pop(event.key, "never settled")
                await self._set_aside([(message.id, receipt)], event, self.max_attempts, why)
                continue
            copies = self._held.setdefault(event.key, [])
            if not copies:
                received.append(event)
            copies.append((message.id, receipt, deliveries))
        return received

    async def complete(self, event: LifecycleEvent) -> None:
        copies = self._held.pop(event.key)
        self._errors.pop(event.key, None)
        for message_id, receipt, _ in copies:
            await self._queue.delete_message(message_id, receipt)

    async def retry_later(self, event: LifecycleEvent, error: str) -> None:
        """Left hidden until its visibility runs out, then offered again; its last failure
        travels with it into the poison queue."""
        copies = self._held.pop(event.key)
        deliveries = max(delivered for _, _, delivered in copies)
        if deliveries >= self.max_attempts:
            self._errors.pop(event.key, None)
            messages = [(message_id, receipt) for message_id, receipt, _ in copies]
            await self._set_aside(messages, event, deliveries, error)
        else:
            self._errors[event.key] = error

    async def _set_aside(
        self,
        messages: Sequence[tuple[str, str]],
        event: LifecycleEvent,
        attempts: int,
        error: str,
    ) -> None:
        """Into the poison queue first (once), then out of the queue: never lost between."""
        record = {"event": event.to_dict(), "attempts": attempts, "last_error": error}
        await self._poison.send_message(_encode(record))
        for message_id, receipt in messages:
            await self._queue.delete_message(message_id, receipt)
        log.warning(
            "lifecycle event %s for %s set aside after %d attempts: %s",
            event.event,
            event.subscription_id,
            attempts,
            error,
        )

    async def poisoned(self) -> list[PoisonedEvent]:
        """Up to 32 set-aside events, read without hiding them (peek)."""
        found = []
        for message in await self._poison.peek_messages(max_messages=MAX_BATCH):
            record = json.loads(message.content)
            event = record.get("event") or {"event": "(not an event)", "subscription_id": "-"}
            found.append(
                PoisonedEvent(
                    str(event.get("event")),
                    str(event.get("subscription_id")),
                    int(record.get("attempts", 0)),
                    record.get("last_error"),
                )
            )
        return found

    async def close(self) -> None:
        await self._queue.close()
        await self._poison.close()


def _encode(record: dict[str, Any]) -> str:
    """A queue message: the event (clientState already dropped) as compact JSON."""
    return json.dumps(record, separators=(",", ":"))
