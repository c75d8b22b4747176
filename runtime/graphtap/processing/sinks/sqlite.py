"""SQLite: the default store for verdicts and dead letters, one durable transaction per batch."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson

from graphtap.processing.deadletters import DeadEvent, DeadLetter, remove_client_states
from graphtap.processing.verdicts import Verdict
from graphtap.transactions import open_store, store_error, write_transaction

STORE = "verdict store"

#: Pages (4 KiB) the write-ahead log may hold before SQLite copies them into the main file.
WAL_CHECKPOINT_PAGES = 10_000

_VERDICT_COLUMNS = """(
    id INTEGER PRIMARY KEY,
    verdict_key TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    change_type TEXT NOT NULL,
    resource TEXT NOT NULL,
    message_id TEXT NOT NULL,
    version TEXT NOT NULL,
    conversation_id TEXT,
    sender_id TEXT,
    content TEXT NOT NULL,
    severity TEXT NOT NULL,
    finding_count INTEGER NOT NULL,
    findings TEXT NOT NULL,
    certificate_id TEXT,
    partition TEXT NOT NULL,
    offset INTEGER NOT NULL,
    processed_at REAL NOT NULL,
    findings_truncated INTEGER NOT NULL DEFAULT 0,
    finding_total INTEGER NOT NULL DEFAULT 0,
    action TEXT,
    UNIQUE (version, verdict_key)
)"""
# Added after the verdict columns above first shipped: a store without them gets them, its
# rows marked as they were written (nothing left out, every finding listed).
_ADDED_VERDICT_COLUMNS = {
    "findings_truncated": (
        "ALTER TABLE verdicts ADD COLUMN findings_truncated INTEGER NOT NULL DEFAULT 0",
    ),
    "finding_total": (
        "ALTER TABLE verdicts ADD COLUMN finding_total INTEGER NOT NULL DEFAULT 0",
        "UPDATE verdicts SET finding_total = finding_count",
    ),
    # The action the policy took in Teams (JSON, see `actions.Action.to_dict`); NULL: none.
    "action": ("ALTER TABLE verdicts ADD COLUMN action TEXT",),
}
_DEAD_LETTER_COLUMNS = """(
    id INTEGER PRIMARY KEY,
    dead_letter_key TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    items TEXT,
    item_count INTEGER NOT NULL,
    event_key TEXT NOT NULL,
    partition TEXT NOT NULL,
    offset INTEGER NOT NULL,
    occurred_at REAL NOT NULL
)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS verdicts {_VERDICT_COLUMNS};
CREATE TABLE IF NOT EXISTS dead_letters {_DEAD_LETTER_COLUMNS};
CREATE TABLE IF NOT EXISTS dead_letter_events (
    event_key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    partition TEXT NOT NULL,
    offset INTEGER NOT NULL,
    body TEXT NOT NULL,
    payloads TEXT
);
"""
# Added after the event bodies' table first shipped: payloads handed over beside a body (a
# JSON object by item index, see `DeadEvent.payloads`); NULL for the bodies stored before.
_ADD_EVENT_PAYLOADS = "ALTER TABLE dead_letter_events ADD COLUMN payloads TEXT"
# Earlier releases kept the whole event body in every dead letter (`event`), one letter per
# item. The bodies move to `dead_letter_events`, once each; a clientState in them is removed,
# since those bodies were stored before it was masked.
_REBUILD_DEAD_LETTERS = (
    f"CREATE TABLE dead_letters_rebuilt {_DEAD_LETTER_COLUMNS}",
    """
    INSERT OR IGNORE INTO dead_letter_events (event_key, size, truncated, partition, offset, body)
    SELECT substr(dead_letter_key, 1, instr(dead_letter_key, ':') - 1),
        length(CAST(event AS BLOB)), 0, partition, offset, graphtap_remove_client_states(event)
    FROM dead_letters ORDER BY id
    """,
    """
    INSERT INTO dead_letters_rebuilt (id, dead_letter_key, reason, message, items, item_count,
        event_key, partition, offset, occurred_at)
    SELECT id, dead_letter_key, reason, message, CAST(item_index AS TEXT), 1,
        substr(dead_letter_key, 1, instr(dead_letter_key, ':') - 1), partition, offset,
        occurred_at
    FROM dead_letters
    """,
    "DROP TABLE dead_letters",
    "ALTER TABLE dead_letters_rebuilt RENAME TO dead_letters",
)
# Earlier releases kept each verdict whole, as JSON, in a `record` column beside a few of its
# fields (the first had no version column either, nor an id: WITHOUT ROWID). SQLite's way to
# change a table this much, on any version it runs on: build the new table from the old one's
# rows, then swap them. `{id}` keeps the old ids, where there are any.
_REBUILD_FROM_RECORDS = (
    f"CREATE TABLE verdicts_rebuilt {_VERDICT_COLUMNS}",
    """
    INSERT INTO verdicts_rebuilt (id, verdict_key, tenant_id, subscription_id, change_type,
        resource, message_id, version, conversation_id, sender_id, content, severity,
        finding_count, findings, certificate_id, partition, offset, processed_at,
        findings_truncated, finding_total)
    SELECT {id}, verdict_key, tenant_id, subscription_id, change_type, resource, message_id,
        coalesce(json_extract(record, '$.version'), ''), conversation_id,
        json_extract(record, '$.sender_id'), coalesce(json_extract(record, '$.content'), ''),
        severity, finding_count, coalesce(json_extract(record, '$.findings'), '[]'),
        json_extract(record, '$.certificate_id'),
        coalesce(json_extract(record, '$.source.partition'), ''),
        coalesce(json_extract(record, '$.source.offset'), -1), processed_at,
        0, finding_count
    FROM verdicts
    """,
    "DROP TABLE verdicts",
    "ALTER TABLE verdicts_rebuilt RENAME TO verdicts",
)


class SqliteStore:
    """Verdicts and dead letters in one file; `INSERT OR IGNORE` on the key makes replays free.

    Rows live in rowid tables with the key in a UNIQUE index: records are a few hundred bytes
    and keys are random hashes, which a WITHOUT ROWID table stores four times slower.

    The verdicts' unique index leads with the version (etag or last-modified time, '' when
    there is none), which the key is derived from, so it admits exactly the same rows as an
    index on the key alone. A Teams version is the change's time in milliseconds: a batch's
    inserts land together near the index's right edge instead of on one random page each,
    so the index writes a fifth of the pages it did and a commit about 40% fewer.

    Every field of a verdict has a column and is stored once, the findings as a JSON array
    (masked and hashed, as in every sink); a JSON copy of the whole verdict beside the
    columns, as earlier releases kept, doubled each row and the pages a commit writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Move WAL pages into the main file every ~40 MB rather than every 4 MB: a batch's
        # commit rewrites many of the same index pages, which are then copied once.
        self._db = open_store(
            path, STORE, f"wal_autocheckpoint={WAL_CHECKPOINT_PAGES}", schema=_SCHEMA
        )
        try:
            self._upgrade()
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise store_error(path, STORE, exc) from None
            raise

    def _upgrade(self) -> None:
        """Rebuild a store written by an earlier release in this schema, keeping every row.

        The version, once only in the record, becomes the column the unique index leads with;
        verdicts gain the columns added since (`_ADDED_VERDICT_COLUMNS`); dead letters refer
        to their event's body, kept once.
        """
        if "record" in self._columns("verdicts"):
            with write_transaction(self._db):
                columns = self._columns("verdicts")  # another process may have done it
                if "record" in columns:
                    identity = "id" if "id" in columns else "NULL"
                    for statement in _REBUILD_FROM_RECORDS:
                        self._db.execute(statement.replace("{id}", identity))
        if not self._columns("verdicts").issuperset(_ADDED_VERDICT_COLUMNS):
            with write_transaction(self._db):
                columns = self._columns("verdicts")
                for column, statements in _ADDED_VERDICT_COLUMNS.items():
                    if column not in columns:
                        for statement in statements:
                            self._db.execute(statement)
        if "payloads" not in self._columns("dead_letter_events"):
            with write_transaction(self._db):
                if "payloads" not in self._columns("dead_letter_events"):
                    self._db.execute(_ADD_EVENT_PAYLOADS)
        if "event" in self._columns("dead_letters"):
            self._db.create_function(
                "graphtap_remove_client_states", 1, remove_client_states, deterministic=True
            )
            with write_transaction(self._db):
                if "event" in self._columns("dead_letters"):
                    for statement in _REBUILD_DEAD_LETTERS:
                        self._db.execute(statement)

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        rows = [
            (
                v.key,
                v.tenant_id,
                v.subscription_id,
                v.change_type,
                v.resource,
                v.message_id,
                v.version or "",
                v.conversation_id,
                v.sender_id,
                v.content,
                v.severity,
                len(v.findings),
                orjson.dumps(v.findings).decode() if v.findings else "[]",
                v.certificate_id,
                v.partition,
                v.offset,
                v.processed_at,
                int(v.findings_truncated),
                v.finding_total,
                orjson.dumps(v.action.to_dict()).decode() if v.action is not None else None,
            )
            for v in verdicts
        ]
        return self._insert(
            "INSERT OR IGNORE INTO verdicts (verdict_key, tenant_id, subscription_id, change_type,"
            " resource, message_id, version, conversation_id, sender_id, content, severity,"
            " finding_count, findings, certificate_id, partition, offset, processed_at,"
            " findings_truncated, finding_total, action)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Each event's body once (a replay adds none), then the letters that refer to it."""
        events = {d.event.key: d.event for d in letters}
        bodies = [
            (e.key, e.size, int(e.truncated), e.partition, e.offset, e.body, _payloads(e))
            for e in events.values()
        ]
        rows = [
            (
                d.key,
                str(d.reason),
                d.message,
                d.items,
                d.item_count,
                d.event.key,
                d.partition,
                d.offset,
                d.occurred_at,
            )
            for d in letters
        ]
        return self._insert(
            "INSERT OR IGNORE INTO dead_letters (dead_letter_key, reason, message, items,"
            " item_count, event_key, partition, offset, occurred_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            rows,
            before=(
                "INSERT OR IGNORE INTO dead_letter_events (event_key, size, truncated,"
                " partition, offset, body, payloads) VALUES (?,?,?,?,?,?,?)",
                bodies,
            ),
        )

    def _insert(
        self,
        sql: str,
        rows: Sequence[tuple[object, ...]],
        *,
        before: tuple[str, Sequence[tuple[object, ...]]] | None = None,
    ) -> int:
        """Insert `rows` (after `before`'s, in the same transaction); return the new rows."""
        if not rows:
            return 0
        try:
            with write_transaction(self._db):
                if before is not None:
                    self._db.executemany(*before)
                changes = self._db.total_changes
                self._db.executemany(sql, rows)
                return self._db.total_changes - changes
        except sqlite3.Error as exc:
            raise store_error(self.path, STORE, exc) from None

    def close(self) -> None:
        self._db.close()


def _payloads(event: DeadEvent) -> str | None:
    if not event.payloads:
        return None
    return orjson.dumps(event.payloads, option=orjson.OPT_NON_STR_KEYS).decode()
