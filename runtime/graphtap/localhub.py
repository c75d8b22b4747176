"""The embedded local hub: Event Hubs' model on one SQLite file, for running with no Azure.

It keeps what the processor relies on: a fixed set of partitions, each an append-only log
with increasing sequence numbers; producers choose a partition by key or round-robin;
consumer groups keep one checkpoint per partition and resume after it. Several producer
and consumer processes may use the same hub at once (WAL mode, busy timeout).
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from graphtap.transactions import (
    StoreError,
    open_store,
    store_error,
    write_transaction,
)

HUB_FILE = "hub.sqlite"
DEFAULT_PARTITIONS = 4
DEFAULT_CONSUMER_GROUP = "graphtap-processor"
#: How much of the hub file readers map into memory (beyond it, pages are read as usual).
MMAP_BYTES = 1 << 30

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hub (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    partition INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    partition_key TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (partition, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer_group TEXT NOT NULL,
    partition INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (consumer_group, partition)
) WITHOUT ROWID;
"""


class LocalHubError(RuntimeError):
    """The hub folder is missing, unreadable, damaged or inconsistent."""


class LocalHubUnusable(LocalHubError):
    """The hub file is damaged, not a hub, read-only or on a full disk: nothing was changed."""


@dataclass(slots=True)  # one per event: a frozen dataclass costs more to build
class HubEvent:
    partition: int
    sequence: int
    enqueued_at: float
    body: bytes


@dataclass(frozen=True, slots=True)
class PartitionState:
    partition: int
    last_sequence: int | None
    checkpoint: int | None

    @property
    def lag(self) -> int:
        """Events enqueued after the consumer group's checkpoint."""
        if self.last_sequence is None:
            return 0
        return self.last_sequence - (self.checkpoint if self.checkpoint is not None else -1)


class LocalHub:
    """A partitioned, append-only event log with consumer-group checkpoints."""

    def __init__(
        self, directory: Path, *, partitions: int | None = None, create: bool = True
    ) -> None:
        self.directory = directory
        path = directory / HUB_FILE
        if not path.exists() and not create:
            raise LocalHubError(f"{directory}: no local hub here (expected {HUB_FILE})")
        try:
            # Reads map the file instead of copying each 4 KiB page in with a system call: an
            # event is a few pages (its body overflows one), and consumers read every event.
            self._db = open_store(path, "local hub", f"mmap_size={MMAP_BYTES}", schema=_SCHEMA)
        except StoreError as exc:
            raise LocalHubUnusable(str(exc)) from None
        try:
            self.partition_count = self._partition_count(partitions)
        except (sqlite3.Error, LocalHubError, ValueError) as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise LocalHubUnusable(str(store_error(path, "local hub", exc))) from None
            if isinstance(exc, ValueError):
                raise LocalHubUnusable(
                    f"local hub {path}: its partition count is not a number; move the hub "
                    "aside and run again"
                ) from None
            raise
        self._next_partition = 0

    def _partition_count(self, requested: int | None) -> int:
        row = self._db.execute("SELECT value FROM hub WHERE name = 'partitions'").fetchone()
        if row is not None:
            existing = int(row[0])
            if requested is not None and requested != existing:
                raise LocalHubError(
                    f"{self.directory}: hub has {existing} partitions, {requested} were asked for "
                    "(partitions are fixed when a hub is created, as in Event Hubs)"
                )
            return existing
        count = requested or DEFAULT_PARTITIONS
        if not 1 <= count <= 1024:
            raise LocalHubError(f"partition count must be 1..1024, got {count}")
        self._db.execute(
            "INSERT OR IGNORE INTO hub (name, value) VALUES ('partitions', ?)", (str(count),)
        )
        return self._partition_count(None)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # producer side

    def partition_for(self, partition_key: str | None) -> int:
        """Same key, same partition (order kept per key); no key, round-robin."""
        if partition_key is not None:
            return zlib.crc32(partition_key.encode()) % self.partition_count
        partition = self._next_partition
        self._next_partition = (partition + 1) % self.partition_count
        return partition

    def send(self, bodies: Iterable[bytes], *, partition_key: str | None = None) -> list[HubEvent]:
        """Append events atomically; each lands on `partition_for(partition_key)`."""
        try:
            return self._send(bodies, partition_key)
        except sqlite3.Error as exc:  # a full disk, say: nothing of this call was appended
            raise self._unusable(exc) from None

    def _unusable(self, exc: sqlite3.Error) -> LocalHubUnusable:
        return LocalHubUnusable(str(store_error(self.directory / HUB_FILE, "local hub", exc)))

    def _send(self, bodies: Iterable[bytes], partition_key: str | None) -> list[HubEvent]:
        now = time.time()
        sent: list[HubEvent] = []
        with write_transaction(self._db):
            next_sequence: dict[int, int] = {}
            for body in bodies:
                partition = self.partition_for(partition_key)
                if partition not in next_sequence:
                    next_sequence[partition] = self._last_sequence(partition) + 1
                sequence = next_sequence[partition]
                next_sequence[partition] = sequence + 1
                self._db.execute(
                    "INSERT INTO events (partition, sequence, enqueued_at, partition_key, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (partition, sequence, now, partition_key, body),
                )
                sent.append(HubEvent(partition, sequence, now, body))
        return sent

    def _last_sequence(self, partition: int) -> int:
        row = self._db.execute(
            "SELECT MAX(sequence) FROM events WHERE partition = ?", (partition,)
        ).fetchone()
        return -1 if row[0] is None else int(row[0])

    # consumer side

    def receive(self, partition: int, *, after: int | None, max_count: int) -> list[HubEvent]:
        """Events of `partition` with sequence > `after` (all when None), oldest first."""
        self._check_partition(partition)
        try:
            rows = self._db.execute(
                "SELECT sequence, enqueued_at, body FROM events"
                " WHERE partition = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                (partition, -1 if after is None else after, max_count),
            ).fetchall()
        except sqlite3.Error as exc:  # damaged since it was opened
            raise self._unusable(exc) from None
        return [HubEvent(partition, seq, enqueued, bytes(body)) for seq, enqueued, body in rows]

    def checkpoint(self, consumer_group: str, partition: int, sequence: int) -> None:
        """Record that `consumer_group` is done with `partition` up to `sequence`.

        Committed without waiting for the disk (`synchronous=NORMAL`; appends keep FULL): a
        power loss may take back the latest checkpoints, never move one ahead, and the
        consumer then replays events whose verdicts its keyed sinks already hold durably.
        """
        self._check_partition(partition)
        try:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with write_transaction(self._db):
                    self._db.execute(
                        "INSERT INTO checkpoints (consumer_group, partition, sequence, updated_at)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (consumer_group, partition)"
                        " DO UPDATE SET sequence = excluded.sequence,"
                        " updated_at = excluded.updated_at"
                        " WHERE excluded.sequence > checkpoints.sequence",
                        (consumer_group, partition, sequence, time.time()),
                    )
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:  # the checkpoint did not move
            raise self._unusable(exc) from None

    def checkpoint_of(self, consumer_group: str, partition: int) -> int | None:
        row = self._db.execute(
            "SELECT sequence FROM checkpoints WHERE consumer_group = ? AND partition = ?",
            (consumer_group, partition),
        ).fetchone()
        return None if row is None else int(row[0])

    def partitions(self, consumer_group: str) -> Sequence[PartitionState]:
        """Each partition's last sequence and the group's checkpoint: the lag, for status pages."""
        return [
            PartitionState(
                p,
                None if (last := self._last_sequence(p)) < 0 else last,
                self.checkpoint_of(consumer_group, p),
            )
            for p in range(self.partition_count)
        ]

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partition_count:
            raise LocalHubError(
                f"partition {partition} does not exist (hub has {self.partition_count})"
            )
