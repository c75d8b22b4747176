"""SQLite: the default store for verdicts and dead letters, one durable transaction per batch."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson

from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.verdicts import Verdict
from graphtap.transactions import write_transaction

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
    UNIQUE (version, verdict_key)
)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS verdicts {_VERDICT_COLUMNS};
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    dead_letter_key TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    item_index INTEGER,
    partition TEXT NOT NULL,
    offset INTEGER NOT NULL,
    occurred_at REAL NOT NULL,
    event TEXT NOT NULL
);
"""
# Earlier releases kept each verdict whole, as JSON, in a `record` column beside a few of its
# fields (the first had no version column either, nor an id: WITHOUT ROWID). SQLite's way to
# change a table this much, on any version it runs on: build the new table from the old one's
# rows, then swap them. `{id}` keeps the old ids, where there are any.
_REBUILD_FROM_RECORDS = (
    f"CREATE TABLE verdicts_rebuilt {_VERDICT_COLUMNS}",
    """
    INSERT INTO verdicts_rebuilt (id, verdict_key, tenant_id, subscription_id, change_type,
        resource, message_id, version, conversation_id, sender_id, content, severity,
        finding_count, findings, certificate_id, partition, offset, processed_at)
    SELECT {id}, verdict_key, tenant_id, subscription_id, change_type, resource, message_id,
        coalesce(json_extract(record, '$.version'), ''), conversation_id,
        json_extract(record, '$.sender_id'), coalesce(json_extract(record, '$.content'), ''),
        severity, finding_count, coalesce(json_extract(record, '$.findings'), '[]'),
        json_extract(record, '$.certificate_id'),
        coalesce(json_extract(record, '$.source.partition'), ''),
        coalesce(json_extract(record, '$.source.offset'), -1), processed_at
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
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the checkpoint that depends on it moves.
        self._db.execute("PRAGMA synchronous=FULL")
        # Move WAL pages into the main file every ~40 MB rather than every 4 MB: a batch's
        # commit rewrites many of the same index pages, which are then copied once.
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """Rebuild a store written by an earlier release in this schema, keeping every row.

        The version, once only in the record, becomes the column the unique index leads with.
        """
        if "record" not in self._verdict_columns():
            return
        with write_transaction(self._db):
            columns = self._verdict_columns()  # another process may have done it meanwhile
            if "record" in columns:
                identity = "id" if "id" in columns else "NULL"
                for statement in _REBUILD_FROM_RECORDS:
                    self._db.execute(statement.replace("{id}", identity))

    def _verdict_columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(verdicts)")}

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
            )
            for v in verdicts
        ]
        return self._insert(
            "INSERT OR IGNORE INTO verdicts (verdict_key, tenant_id, subscription_id, change_type,"
            " resource, message_id, version, conversation_id, sender_id, content, severity,"
            " finding_count, findings, certificate_id, partition, offset, processed_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        rows = [
            (
                d.key,
                str(d.reason),
                d.message,
                d.item_index,
                d.partition,
                d.offset,
                d.occurred_at,
                d.event,
            )
            for d in letters
        ]
        return self._insert(
            "INSERT OR IGNORE INTO dead_letters (dead_letter_key, reason, message, item_index,"
            " partition, offset, occurred_at, event) VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )

    def _insert(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        if not rows:
            return 0
        before = self._db.total_changes
        with write_transaction(self._db):
            self._db.executemany(sql, rows)
        return self._db.total_changes - before

    def close(self) -> None:
        self._db.close()
