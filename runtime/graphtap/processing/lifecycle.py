"""The lifecycle queue: the processor's hand-off of lifecycle events to the control plane.

Graph signals `reauthorizationRequired`, `subscriptionRemoved` and `missed` in the same
stream as the changes. The processor does not act on them; it persists them here (SQLite,
deduplicated like verdicts) and checkpoints, and the control plane drains the queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphtap.transactions import open_store, store_error, write_transaction

log = logging.getLogger(__name__)

REAUTHORIZATION_REQUIRED = "reauthorizationRequired"
SUBSCRIPTION_REMOVED = "subscriptionRemoved"
MISSED = "missed"
KNOWN_EVENTS = frozenset({REAUTHORIZATION_REQUIRED, SUBSCRIPTION_REMOVED, MISSED})
QUEUE = "lifecycle queue"

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

    def retry_later(self, key: str, error: str) -> None:
        """Keep the event pending, recording why handling it failed this time."""
        self._db.execute(
            "UPDATE lifecycle_events SET attempts = attempts + 1, last_error = ? WHERE key = ?",
            (error, key),
        )

    def counts(self) -> dict[str, int]:
        """Events by lifecycle event name and status, e.g. {'missed/pending': 2}."""
        rows = self._db.execute(
            "SELECT event, status, COUNT(*) FROM lifecycle_events GROUP BY event, status"
        ).fetchall()
        return {f"{event}/{status}": count for event, status, count in rows}
