"""The action outbox: actions to apply in Teams, written in the batch's commit, applied later.

The commit step writes each action the policy enforces here, in the same commit as its
verdict and before the checkpoint; the actor (`graphtap.enforcement`) drains it and records
every outcome. Keyed by the verdict key, so a replayed batch adds nothing and nothing is
patched twice. Graph being slow or down only leaves records pending: the notifications'
checkpoint never waits for it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from graphtap.processing.actions import Action, Target
from graphtap.transactions import open_store, store_error, write_transaction

STORE = "action outbox"

#: Outcomes the actor records; `pending` until then.
PENDING = "pending"
APPLIED = "applied"
ALREADY_APPLIED = "already_applied"
OVERRIDDEN = "overridden"
GONE = "gone"
FORBIDDEN = "forbidden"
FAILED = "failed"
OUTCOMES = (APPLIED, ALREADY_APPLIED, OVERRIDDEN, GONE, FORBIDDEN, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    verdict_key TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    rule TEXT NOT NULL,
    types TEXT NOT NULL,
    confidence INTEGER NOT NULL,
    target TEXT NOT NULL,
    violation TEXT NOT NULL,
    decided_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS actions_pending ON actions (status, decided_at);
"""


# An action's columns, in `OutboxRecord`'s order; a view so the three queries name them once.
_VIEW = """
CREATE VIEW IF NOT EXISTS action_records AS SELECT verdict_key, action, rule, types,
    confidence, target, violation, decided_at, status, attempts, detail, updated_at
FROM actions;
"""
_PENDING = "SELECT * FROM action_records WHERE status = 'pending' ORDER BY decided_at LIMIT ?"
_NEWEST = "SELECT * FROM action_records ORDER BY decided_at DESC LIMIT ?"
_ONE = "SELECT * FROM action_records WHERE verdict_key = ?"


class ActionSink(Protocol):
    """Where the commit step puts the actions to enforce: durable on return (the batch is
    checkpointed next), keyed by verdict key. The SQLite outbox is the local one; a shared
    store (a storage queue or table, for instances that share a hub) takes this shape."""

    async def put(self, actions: Sequence[Action]) -> int: ...


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    verdict_key: str
    action: str
    rule: str
    types: tuple[str, ...]
    confidence: int
    target: Target
    violation: dict[str, Any]
    decided_at: float
    status: str
    attempts: int
    detail: str | None
    updated_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """The audit view: no tip text, no message content."""
        return {
            "verdict_key": self.verdict_key,
            "action": self.action,
            "rule": self.rule,
            "types": list(self.types),
            "confidence": self.confidence,
            "status": self.status,
            "attempts": self.attempts,
            "detail": self.detail,
            "decided_at": self.decided_at,
            "updated_at": self.updated_at,
        }


class ActionOutbox:
    """A durable, deduplicating outbox of actions in one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the outbox; a damaged or unwritable file is a `StoreError`."""
        self.path = path
        self._db = open_store(path, STORE)
        self._ready = False  # the tables are made on first use: a store that never enforces
        # (most runs share the verdict store's file) gains nothing

    def _ensure(self) -> None:
        if not self._ready:
            try:
                self._db.executescript(_SCHEMA + _VIEW)
            except sqlite3.Error as exc:
                raise store_error(self.path, STORE, exc) from None
            self._ready = True

    def close(self) -> None:
        self._db.close()

    def put(self, actions: Sequence[Action]) -> int:
        """Persist the actions to apply (durable on return); returns how many were new."""
        rows = [
            (
                a.verdict_key,
                a.action,
                a.rule,
                json.dumps(list(a.types)),
                a.confidence,
                json.dumps(a.target.to_dict()),
                json.dumps(a.violation, separators=(",", ":")),
                a.decided_at,
            )
            for a in actions
            if a.to_apply and a.target is not None
        ]
        if not rows:
            return 0
        self._ensure()
        try:
            with write_transaction(self._db):
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO actions (verdict_key, action, rule, types, confidence,"
                    " target, violation, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                return self._db.total_changes - before
        except sqlite3.Error as exc:  # a full disk, say: the batch is not checkpointed
            raise store_error(self.path, STORE, exc) from None

    def pending(self, limit: int = 100) -> list[OutboxRecord]:
        """The oldest actions not yet applied."""
        return self._select(_PENDING, (limit,))

    def records(self, limit: int = 1000) -> list[OutboxRecord]:
        """The newest actions first, whatever their status."""
        return self._select(_NEWEST, (limit,))

    def get(self, verdict_key: str) -> OutboxRecord | None:
        found = self._select(_ONE, (verdict_key,))
        return found[0] if found else None

    def _select(self, sql: str, parameters: tuple[object, ...]) -> list[OutboxRecord]:
        self._ensure()
        rows = self._db.execute(sql, parameters).fetchall()
        return [
            OutboxRecord(
                verdict_key=row[0],
                action=row[1],
                rule=row[2],
                types=tuple(json.loads(row[3])),
                confidence=int(row[4]),
                target=Target.from_dict(json.loads(row[5])),
                violation=json.loads(row[6]),
                decided_at=float(row[7]),
                status=row[8],
                attempts=int(row[9]),
                detail=row[10],
                updated_at=row[11],
            )
            for row in rows
        ]

    def settle(self, verdict_key: str, outcome: str, detail: str | None, at: float) -> None:
        """Record the actor's outcome; the record leaves the pending set."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; known: {', '.join(OUTCOMES)}")
        self._ensure()
        self._db.execute(
            "UPDATE actions SET status = ?, attempts = attempts + 1, detail = ?, updated_at = ?"
            " WHERE verdict_key = ?",
            (outcome, detail, at, verdict_key),
        )

    def retry_later(self, verdict_key: str, error: str, at: float) -> None:
        """Keep the action pending, recording why applying it failed this time."""
        self._ensure()
        self._db.execute(
            "UPDATE actions SET attempts = attempts + 1, detail = ?, updated_at = ?"
            " WHERE verdict_key = ?",
            (error, at, verdict_key),
        )

    def counts(self) -> dict[str, int]:
        """Actions by action and status, e.g. {'block/applied': 2}."""
        self._ensure()
        rows = self._db.execute(
            "SELECT action, status, COUNT(*) FROM actions GROUP BY action, status"
        ).fetchall()
        return {f"{action}/{status}": count for action, status, count in rows}


class BlockingOutbox:
    """The SQLite outbox behind the async interface: a local write takes milliseconds, and
    the connection stays on the event loop's thread."""

    def __init__(self, outbox: ActionOutbox) -> None:
        self.outbox = outbox

    async def put(self, actions: Sequence[Action]) -> int:
        return self.outbox.put(actions)


def as_sink(outbox: ActionOutbox | ActionSink) -> ActionSink:
    """Either outbox behind the async interface (the SQLite one is wrapped)."""
    return BlockingOutbox(outbox) if isinstance(outbox, ActionOutbox) else outbox
