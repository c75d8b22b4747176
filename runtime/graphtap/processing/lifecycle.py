"""The lifecycle queue: the processor's hand-off of lifecycle events to the control plane.

Graph signals `reauthorizationRequired`, `subscriptionRemoved` and `missed` in the same
stream as the changes. The processor does not act on them; the commit step persists them
(`SharedLifecycle.put`) before it checkpoints, and the control plane drains the queue. An
event whose handling fails `max_attempts` times is set aside as poison and shown on the
status page, instead of blocking the queue or being retried for ever.

Two queues serve that interface: `LifecycleQueue` (one SQLite file, deduplicated like
verdicts: the local default) behind `BlockingLifecycle`, and, on Azure, the Storage queue
the web hosts share (`graphtap.processing.lifecycle_storage`): processors on any host
enqueue, the leader drains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from graphtap.transactions import open_store, store_error, write_transaction

log = logging.getLogger(__name__)

REAUTHORIZATION_REQUIRED = "reauthorizationRequired"
SUBSCRIPTION_REMOVED = "subscriptionRemoved"
MISSED = "missed"
KNOWN_EVENTS = frozenset({REAUTHORIZATION_REQUIRED, SUBSCRIPTION_REMOVED, MISSED})
QUEUE = "lifecycle queue"
#: Handling attempts before an event is set aside as poison.
MAX_ATTEMPTS = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lifecycle_events (
    key TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    tenant_id TEXT,
    event TEXT NOT NULL,
    subscription_expiration TEXT,
    received_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lifecycle_pending ON lifecycle_events (status, received_at);
"""


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    key: str
    subscription_id: str
    tenant_id: str | None
    event: str
    subscription_expiration: str | None
    received_at: float
    item: dict[str, Any]

    @property
    def is_known(self) -> bool:
        return self.event in KNOWN_EVENTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "subscription_id": self.subscription_id,
            "tenant_id": self.tenant_id,
            "event": self.event,
            "subscription_expiration": self.subscription_expiration,
            "received_at": self.received_at,
            "item": self.item,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LifecycleEvent:
        """The inverse of `to_dict`; a record missing a field is a `ValueError` naming it."""
        try:
            return cls(
                key=str(data["key"]),
                subscription_id=str(data["subscription_id"]),
                tenant_id=data.get("tenant_id"),
                event=str(data["event"]),
                subscription_expiration=data.get("subscription_expiration"),
                received_at=float(data["received_at"]),
                item=dict(data["item"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a lifecycle event record: {exc!r}") from None

    @classmethod
    def from_item(
        cls,
        item: dict[str, Any],
        *,
        body: bytes,
        index: int,
        received_at: float,
        digest: str | None = None,
    ) -> LifecycleEvent:
        """`digest`: the SHA-256 (hex) of `body`, when the caller has it already."""
        event = str(item.get("lifecycleEvent"))
        if event not in KNOWN_EVENTS:
            log.warning(
                "unknown lifecycleEvent %r for subscription %s: queued for the control plane",
                event,
                item.get("subscriptionId"),
            )
        if digest is None:
            digest = hashlib.sha256(body).hexdigest()
        return cls(
            key=f"{digest}:{index}",
            subscription_id=str(item.get("subscriptionId")),
            tenant_id=item.get("tenantId"),
            event=event,
            subscription_expiration=item.get("subscriptionExpirationDateTime"),
            received_at=received_at,
            # clientState is a secret: it has been verified and is not kept.
            item={k: v for k, v in item.items() if k != "clientState"},
        )


@dataclass(frozen=True, slots=True)
class PoisonedEvent:
    """An event set aside after failing `attempts` times: what the status page lists."""

    event: str
    subscription_id: str
    attempts: int
    last_error: str | None


class SharedLifecycle(Protocol):
    """The lifecycle queue as the commit step and the control plane use it."""

    async def put(self, events: Sequence[LifecycleEvent]) -> int:
        """Durable on return (the batch is checkpointed next); how many were accepted."""
        ...

    async def pending(self, limit: int = 32) -> list[LifecycleEvent]:
        """The next events to handle (a shared queue hides them from others meanwhile)."""
        ...

    async def complete(self, event: LifecycleEvent) -> None: ...

    async def retry_later(self, event: LifecycleEvent, error: str) -> None:
        """Handling failed: offer it again, or set it aside once it failed too often."""
        ...

    async def poisoned(self) -> list[PoisonedEvent]: ...

    async def close(self) -> None: ...


class LifecycleQueue:
    """A durable, deduplicating queue of lifecycle events in one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the queue; a damaged or unwritable file is a `StoreError`."""
        self.path = path
        self._db = open_store(path, QUEUE, schema=_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(self, events: Sequence[LifecycleEvent]) -> int:
        """Persist events (durable on return); returns how many were new."""
        if not events:
            return 0
        before = self._db.total_changes
        try:
            self._insert(events)
        except sqlite3.Error as exc:  # a full disk, say: the batch is not checkpointed
            raise store_error(self.path, QUEUE, exc) from None
        return self._db.total_changes - before

    def _insert(self, events: Sequence[LifecycleEvent]) -> None:
        with write_transaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO lifecycle_events (key, subscription_id, tenant_id, event,"
                " subscription_expiration, received_at, item) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.key,
                        e.subscription_id,
                        e.tenant_id,
                        e.event,
                        e.subscription_expiration,
                        e.received_at,
                        json.dumps(e.item, separators=(",", ":")),
                    )
                    for e in events
                ],
            )

    def pending(self, limit: int = 100) -> list[LifecycleEvent]:
        """The oldest events not yet handled."""
        rows = self._db.execute(
            "SELECT key, subscription_id, tenant_id, event, subscription_expiration, received_at,"
            " item FROM lifecycle_events WHERE status = 'pending' ORDER BY received_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            LifecycleEvent(key, sid, tenant, event, expiration, received, json.loads(item))
            for key, sid, tenant, event, expiration, received, item in rows
        ]

    def complete(self, key: str) -> None:
        self._db.execute("UPDATE lifecycle_events SET status = 'done' WHERE key = ?", (key,))

    def retry_later(self, key: str, error: str, *, max_attempts: int | None = None) -> None:
        """Keep the event pending, recording why handling it failed this time; after
        `max_attempts` failures it is set aside as poison."""
        self._db.execute(
            "UPDATE lifecycle_events SET attempts = attempts + 1, last_error = ?,"
            " status = CASE WHEN ? IS NOT NULL AND attempts + 1 >= ? THEN 'poison'"
            " ELSE status END WHERE key = ?",
            (error, max_attempts, max_attempts, key),
        )

    def poisoned(self, limit: int = 32) -> list[PoisonedEvent]:
        rows = self._db.execute(
            "SELECT event, subscription_id, attempts, last_error FROM lifecycle_events"
            " WHERE status = 'poison' ORDER BY received_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [PoisonedEvent(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Events by lifecycle event name and status, e.g. {'missed/pending': 2}."""
        rows = self._db.execute(
            "SELECT event, status, COUNT(*) FROM lifecycle_events GROUP BY event, status"
        ).fetchall()
        return {f"{event}/{status}": count for event, status, count in rows}


class BlockingLifecycle:
    """The SQLite queue behind the async interface: the local default. Calls run on the
    event loop (a local write takes milliseconds, and the connection stays on its thread)."""

    def __init__(self, queue: LifecycleQueue, *, max_attempts: int = MAX_ATTEMPTS) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.queue = queue
        self.max_attempts = max_attempts

    async def put(self, events: Sequence[LifecycleEvent]) -> int:
        return self.queue.put(events)

    async def pending(self, limit: int = 32) -> list[LifecycleEvent]:
        return self.queue.pending(limit)

    async def complete(self, event: LifecycleEvent) -> None:
        self.queue.complete(event.key)

    async def retry_later(self, event: LifecycleEvent, error: str) -> None:
        self.queue.retry_later(event.key, error, max_attempts=self.max_attempts)

    async def poisoned(self) -> list[PoisonedEvent]:
        return self.queue.poisoned()

    async def close(self) -> None:
        self.queue.close()


def shared(queue: LifecycleQueue | SharedLifecycle) -> SharedLifecycle:
    """Either queue behind the async interface (the SQLite one is wrapped)."""
    return BlockingLifecycle(queue) if isinstance(queue, LifecycleQueue) else queue
