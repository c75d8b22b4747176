"""Where a resync stands, kept durably so a restart resumes it instead of starting over.

A resync job is a window (start, end, reason) over a fixed work list: the users whose chats
and the teams whose channels are read back. Its cursor says which units are finished (done,
or failed for a reason retrying will not fix) and, for a unit being read, the link of its
next page. A unit is recorded done only after its messages went through the commit step, so
a process killed at any moment re-reads at most the units it had in flight.

Every store behind `CursorStore` also keeps a claim (an owner and a wall-clock deadline,
renewed by each write): a job another instance is running is left to it until its claim
lapses. `SqliteCursorStore` keeps jobs in the instance's state folder; on Azure,
`graphtap.subscriptions.blobcursor.BlobCursorStore` keeps them in the checkpoint container.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from graphtap.transactions import StoreError, open_store, store_error, write_transaction

CURSOR_STORE = "resync cursor store"
#: Unit kinds: a user's chats (`/users/{id}/chats/getAllMessages`) or a team's channels.
USER = "user"
TEAM = "team"
KINDS = frozenset({USER, TEAM})
#: How often a running job's claim is written again; claims last far longer (minutes).
RENEW_SECONDS = 60.0


class CursorStoreError(StoreError):
    """A cursor store whose content cannot be read; the message names it and what to do."""


@dataclass(frozen=True, slots=True)
class Unit:
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Unit:
        kind, sep, ident = text.partition(":")
        if not sep or kind not in KINDS or not ident:
            raise ValueError(f"not a resync unit: {text[:80]!r} (expected user:ID or team:ID)")
        return cls(kind, ident)


@dataclass(frozen=True, slots=True)
class ResyncJob:
    id: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    units: tuple[Unit, ...]
    created: dt.datetime
    #: False: a window stored before its users and teams were listed (`units` is empty); the
    #: runner lists them into a job of its own, so a listing that fails leaves the gap owed.
    listed: bool = True

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "reason": self.reason,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "created": self.created.isoformat(),
            "units": [str(u) for u in self.units],
        }
        if not self.listed:
            record["listed"] = False
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResyncJob:
        """Raises ValueError (or KeyError, TypeError) naming what is wrong."""
        return cls(
            id=str(data["id"]),
            reason=str(data["reason"]),
            start=_moment(data["start"]),
            end=_moment(data["end"]),
            units=tuple(Unit.parse(str(u)) for u in data["units"]),
            created=_moment(data["created"]),
            listed=data.get("listed", True) is not False,
        )


@dataclass(frozen=True, slots=True)
class UnitUpdate:
    """One unit's progress: its next page (`page`), or finished (`done`, with `error` when it
    failed for good)."""

    unit: int
    page: str | None = None
    done: bool = False
    error: str | None = None


@dataclass
class Cursor:
    done: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    pages: dict[int, str] = field(default_factory=dict)
    owner: str | None = None
    claimed_until: float = 0.0

    def finished(self, unit: int) -> bool:
        return unit in self.done or unit in self.failed

    def pending(self, job: ResyncJob) -> list[int]:
        """The units still to read, those with a page to resume from first."""
        left = [i for i in range(len(job.units)) if not self.finished(i)]
        return sorted(left, key=lambda i: i not in self.pages)

    def apply(self, update: UnitUpdate) -> None:
        if update.done:
            self.pages.pop(update.unit, None)
            if update.error is not None:
                self.failed[update.unit] = update.error
            else:
                self.done.add(update.unit)
        elif update.page is not None and not self.finished(update.unit):
            self.pages[update.unit] = update.page

    def copy(self) -> Cursor:
        return Cursor(
            set(self.done), dict(self.failed), dict(self.pages), self.owner, self.claimed_until
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": _ranges(self.done),
            "failed": {str(k): v for k, v in sorted(self.failed.items())},
            "pages": {str(k): v for k, v in sorted(self.pages.items())},
            "owner": self.owner,
            "claimed_until": self.claimed_until,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], units: int) -> Cursor:
        """Raises ValueError (or KeyError, TypeError) naming what is wrong."""
        cursor = cls(
            done={i for first, last in data["done"] for i in range(int(first), int(last) + 1)},
            failed={int(k): str(v) for k, v in data["failed"].items()},
            pages={int(k): str(v) for k, v in data["pages"].items()},
            owner=None if data.get("owner") is None else str(data["owner"]),
            claimed_until=float(data.get("claimed_until") or 0.0),
        )
        outside = [i for i in (*cursor.done, *cursor.failed, *cursor.pages) if not 0 <= i < units]
        if outside:
            raise ValueError(f"unit {outside[0]} is outside the job's {units} units")
        return cursor


class CursorStore(Protocol):
    """Durable resync jobs and their cursors. Every method is durable on return."""

    async def add(self, job: ResyncJob, *, owner: str, until: float) -> None:
        """Record a new job, claimed by `owner` until `until` (wall-clock seconds)."""
        ...

    async def claim(
        self, *, owner: str, now: float, until: float
    ) -> list[tuple[ResyncJob, Cursor]]:
        """The unfinished jobs no other owner holds a live claim on, now claimed by `owner`."""
        ...

    async def record(self, job_id: str, update: UnitUpdate, *, until: float) -> None:
        """Record a unit's progress and renew the job's claim."""
        ...

    async def finish(self, job_id: str) -> None:
        """The job is complete: forget it."""
        ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS resync_jobs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    owner TEXT,
    claimed_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS resync_units (
    job_id TEXT NOT NULL,
    unit INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reading', 'done', 'failed')),
    page TEXT,
    error TEXT,
    PRIMARY KEY (job_id, unit)
);
"""


class SqliteCursorStore:
    """Resync jobs in one SQLite file in the instance's state folder."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the store; a damaged or unwritable file is a `StoreError`."""
        self.path = path
        # A commit survives the process at once and the machine at the next checkpoint of
        # the log: a power loss may forget the last few units, which are then read again
        # (their verdicts are already stored under the same keys), never one not committed.
        self._db = open_store(path, CURSOR_STORE, "synchronous=NORMAL", schema=_SCHEMA)
        #: The claim deadline last written, by job.
        self._renewed: dict[str, float] = {}

    async def add(self, job: ResyncJob, *, owner: str, until: float) -> None:
        self._write(
            "INSERT INTO resync_jobs (id, job, owner, claimed_until) VALUES (?, ?, ?, ?)",
            [(job.id, json.dumps(job.to_dict(), separators=(",", ":")), owner, until)],
        )
        self._renewed[job.id] = until

    async def claim(
        self, *, owner: str, now: float, until: float
    ) -> list[tuple[ResyncJob, Cursor]]:
        claimed: list[tuple[ResyncJob, Cursor]] = []
        try:
            with write_transaction(self._db):
                rows = self._db.execute(
                    "SELECT id, job FROM resync_jobs WHERE owner IS NULL OR owner = ?"
                    " OR claimed_until <= ? ORDER BY rowid",
                    (owner, now),
                ).fetchall()
                for job_id, text in rows:
                    job = self._job(job_id, text)
                    claimed.append((job, self._cursor(job, owner, until)))
                    self._db.execute(
                        "UPDATE resync_jobs SET owner = ?, claimed_until = ? WHERE id = ?",
                        (owner, until, job_id),
                    )
                    self._renewed[job_id] = until
        except sqlite3.Error as exc:
            raise store_error(self.path, CURSOR_STORE, exc) from None
        return claimed

    async def record(self, job_id: str, update: UnitUpdate, *, until: float) -> None:
        state = ("failed" if update.error is not None else "done") if update.done else "reading"
        try:
            # One statement, its own transaction: a resync records thousands of units.
            self._db.execute(
                "INSERT INTO resync_units (job_id, unit, state, page, error)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, unit) DO UPDATE SET"
                " state = excluded.state, page = excluded.page, error = excluded.error"
                " WHERE resync_units.state = 'reading'",
                (job_id, update.unit, state, update.page, update.error),
            )
            # The claim is renewed every `RENEW_SECONDS`, not on every unit.
            if until - self._renewed.get(job_id, 0.0) >= RENEW_SECONDS:
                self._db.execute(
                    "UPDATE resync_jobs SET claimed_until = ? WHERE id = ?", (until, job_id)
                )
                self._renewed[job_id] = until
        except sqlite3.Error as exc:
            raise store_error(self.path, CURSOR_STORE, exc) from None

    async def finish(self, job_id: str) -> None:
        self._write("DELETE FROM resync_units WHERE job_id = ?", [(job_id,)])
        self._write("DELETE FROM resync_jobs WHERE id = ?", [(job_id,)])

    async def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            with write_transaction(self._db):
                self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise store_error(self.path, CURSOR_STORE, exc) from None

    def _job(self, job_id: str, text: str) -> ResyncJob:
        try:
            return ResyncJob.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._damaged(f"job {job_id}", exc) from None

    def _cursor(self, job: ResyncJob, owner: str, until: float) -> Cursor:
        cursor = Cursor(owner=owner, claimed_until=until)
        for unit, state, page, error in self._db.execute(
            "SELECT unit, state, page, error FROM resync_units WHERE job_id = ?", (job.id,)
        ):
            if not 0 <= unit < len(job.units):
                raise self._damaged(
                    f"job {job.id}", ValueError(f"unit {unit} is outside its {len(job.units)}")
                )
            if state == "done":
                cursor.done.add(unit)
            elif state == "failed":
                cursor.failed[unit] = error or "failed"
            elif page:
                cursor.pages[unit] = page
        return cursor

    def _damaged(self, what: str, exc: BaseException) -> CursorStoreError:
        return CursorStoreError(
            f"{CURSOR_STORE} {self.path}: {what} cannot be read ({type(exc).__name__}: {exc}); "
            "move the file aside and run again: the resyncs it held start over from their "
            "windows when their gaps are seen again"
        )


class MemoryCursorStore:
    """Jobs kept only in this process: for a control plane given no state folder."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[ResyncJob, Cursor]] = {}

    async def add(self, job: ResyncJob, *, owner: str, until: float) -> None:
        self._jobs[job.id] = (job, Cursor(owner=owner, claimed_until=until))

    async def claim(
        self, *, owner: str, now: float, until: float
    ) -> list[tuple[ResyncJob, Cursor]]:
        claimed = []
        for job, cursor in self._jobs.values():
            if cursor.owner in (None, owner) or cursor.claimed_until <= now:
                cursor.owner, cursor.claimed_until = owner, until
                claimed.append((job, cursor.copy()))
        return claimed

    async def record(self, job_id: str, update: UnitUpdate, *, until: float) -> None:
        _, cursor = self._jobs[job_id]
        cursor.apply(update)
        cursor.claimed_until = until

    async def finish(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    async def close(self) -> None:
        self._jobs.clear()


def _moment(text: object) -> dt.datetime:
    moment = dt.datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def _ranges(values: set[int]) -> list[list[int]]:
    """Sorted indices as [first, last] runs: a resync finishes units roughly in order."""
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and runs[-1][1] == value - 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return runs
