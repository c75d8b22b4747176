"""Verdicts with findings, read back from a verdict store for analysts: one row per finding.

The SQLite store is opened read-only (`mode=ro`: never upgraded, its file never written;
SQLite may leave its `-wal` and `-shm` companions beside a store in WAL mode) and the
filters run in SQL: the findings column is a JSON array, expanded with `json_each`. A JSONL
store is read line by line. Findings carry no value, only the masked `preview` and the keyed
hash, so nothing read here can show what was found.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphtap.inspection.policy import SEVERITIES
from graphtap.processing.verdicts import Verdict

#: Columns a verdict store must have for this reader; an older or foreign file is refused.
_REQUIRED_COLUMNS = frozenset(
    {"conversation_id", "sender_id", "severity", "finding_count", "findings", "processed_at"}
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
#: How much of a JSONL store's end the latest rows are looked for in.
JSONL_TAIL_BYTES = 4 * 1024 * 1024


class FindingsError(Exception):
    """The store cannot be read: one line naming the file and what to do."""


@dataclass(frozen=True, slots=True)
class FindingRow:
    """One finding of one verdict, with the verdict's fields an analyst filters on."""

    processed_at: float
    severity: str
    type: str
    confidence: int
    count: int
    preview: str
    value_hash: str
    conversation_id: str | None
    sender_id: str | None
    change_type: str
    message_id: str
    verdict_key: str
    #: What the policy did in Teams, e.g. "block: dry_run" (None: report only).
    action: str | None = None

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.processed_at, dt.UTC)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(timespec="seconds"),
            "severity": self.severity,
            "type": self.type,
            "confidence": self.confidence,
            "count": self.count,
            "preview": self.preview,
            "value_hash": self.value_hash,
            "conversation_id": self.conversation_id,
            "sender_id": self.sender_id,
            "change_type": self.change_type,
            "message_id": self.message_id,
            "verdict_key": self.verdict_key,
            "action": self.action,
        }


#: The fields of `FindingRow.to_dict`, in order: the columns of the CSV and JSONL output.
FIELDS: tuple[str, ...] = (
    "time",
    "severity",
    "type",
    "confidence",
    "count",
    "preview",
    "value_hash",
    "conversation_id",
    "sender_id",
    "change_type",
    "message_id",
    "verdict_key",
    "action",
)


@dataclass(frozen=True)
class FindingsQuery:
    """Which findings to list: newest first."""

    since: float | None = None  # epoch seconds
    types: frozenset[str] = field(default_factory=frozenset)
    min_severity: str | None = None  # low < medium < high < critical
    limit: int | None = None

    def severities(self) -> tuple[str, ...]:
        if self.min_severity is None:
            return SEVERITIES
        return SEVERITIES[SEVERITIES.index(self.min_severity) :]

    def admits(self, row: FindingRow) -> bool:
        return (
            (self.since is None or row.processed_at >= self.since)
            and (not self.types or row.type in self.types)
            and row.severity in self.severities()
        )


def parse_since(text: str, *, now: dt.datetime | None = None) -> float:
    """An ISO time (UTC when it names no zone) or a duration back from now: 30m, 1h, 7d."""
    now = now or dt.datetime.now(dt.UTC)
    duration = _DURATION.match(text)
    if duration:
        seconds = float(duration.group(1)) * _UNIT_SECONDS[duration.group(2).lower()]
        try:
            return (now - dt.timedelta(seconds=seconds)).timestamp()
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO time (2026-01-05T09:00) nor a duration (30m, 1h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def read_findings(kind: str, path: Path, query: FindingsQuery) -> list[FindingRow]:
    """Rows from a `sqlite` or `jsonl` verdict store, newest first."""
    if kind == "sqlite":
        return read_sqlite(path, query)
    if kind == "jsonl":
        return read_jsonl(path, query)
    raise FindingsError(f"cannot read findings from a {kind}: store; use sqlite:FILE or jsonl:FILE")


# -- SQLite ------------------------------------------------------------------------------


def open_read_only(path: Path) -> sqlite3.Connection:
    """The verdict store, read-only; a missing, foreign or damaged file is a FindingsError."""
    if not path.is_file():
        raise FindingsError(f"verdict store {path} does not exist: give the sink `process` wrote")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from None
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(verdicts)")}
        if not columns:
            raise FindingsError(
                f"{path} is not a graphtap verdict store (it has no verdicts table)"
            )
        if not columns >= _REQUIRED_COLUMNS:
            raise FindingsError(
                f"verdict store {path} is from an earlier release: open it once with "
                "`graphtap process` (which upgrades it), then list its findings"
            )
    except sqlite3.Error as exc:
        db.close()
        raise _store_error(path, exc) from None
    except FindingsError:
        db.close()
        raise
    return db


def _store_error(path: Path, exc: sqlite3.Error) -> FindingsError:
    text = " ".join(str(exc).split())
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return FindingsError(
            f"verdict store {path} is not a SQLite database (or is damaged): restore it from "
            "a backup, or give another file"
        )
    return FindingsError(f"verdict store {path}: {text}")


_SQLITE_QUERY = """
SELECT v.processed_at, v.severity,
    json_extract(f.value, '$.type'), json_extract(f.value, '$.confidence'),
    json_extract(f.value, '$.count'), json_extract(f.value, '$.preview'),
    json_extract(f.value, '$.value_hash'),
    v.conversation_id, v.sender_id, v.change_type, v.message_id, v.verdict_key, {action}
FROM verdicts AS v {join} JOIN json_each(v.findings) AS f
WHERE v.finding_count > 0 {where}
ORDER BY v.id DESC
{limit}
"""


#: A verdict's action with the actor's outcome (the outbox's status) as its state, once known.
_WITH_OUTCOME = (
    "CASE WHEN v.action IS NULL OR a.status IS NULL OR a.status = 'pending' THEN v.action"
    " ELSE json_set(v.action, '$.state', a.status) END"
)

# Newest first is the order rows were stored in, backwards: a scan of the rowid that stops
# at the limit, with no sort (`json_each` yields a verdict's findings in their order).


def read_sqlite(path: Path, query: FindingsQuery) -> list[FindingRow]:
    db = open_read_only(path)
    try:
        return list(query_sqlite(db, query, path))
    finally:
        db.close()


def query_sqlite(db: sqlite3.Connection, query: FindingsQuery, path: Path) -> Iterator[FindingRow]:
    where: list[str] = []
    parameters: list[object] = []
    if query.since is not None:
        where.append("v.processed_at >= ?")
        parameters.append(query.since)
    severities = query.severities()
    where.append(f"v.severity IN ({', '.join('?' * len(severities))})")
    parameters.extend(severities)
    if query.types:
        where.append(f"json_extract(f.value, '$.type') IN ({', '.join('?' * len(query.types))})")
        parameters.extend(sorted(query.types))
    limit = ""
    if query.limit is not None:
        limit = "LIMIT ?"
        parameters.append(query.limit)
    try:
        # A store from before actions has no action column (it is read, never upgraded,
        # here); where the actor's outbox shares the file, an action shows its outcome.
        columns = {row[1] for row in db.execute("PRAGMA table_info(verdicts)")}
        outbox = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'actions'"
        ).fetchone()
        action, join = "NULL", ""
        if "action" in columns:
            action = "v.action"
        if "action" in columns and outbox:
            action = _WITH_OUTCOME
            join = "LEFT JOIN actions AS a ON a.verdict_key = v.verdict_key"
        sql = _SQLITE_QUERY.format(
            where="".join(f" AND {w}" for w in where), limit=limit, action=action, join=join
        )
        for row in db.execute(sql, parameters):
            yield FindingRow(
                processed_at=float(row[0]),
                severity=str(row[1]),
                type=str(row[2]),
                confidence=int(row[3] or 0),
                count=int(row[4] or 0),
                preview=str(row[5] or ""),
                value_hash=str(row[6] or ""),
                conversation_id=row[7],
                sender_id=row[8],
                change_type=str(row[9]),
                message_id=str(row[10]),
                verdict_key=str(row[11]),
                action=action_summary(json.loads(row[12]) if row[12] else None),
            )
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from None


# -- JSONL -------------------------------------------------------------------------------


def read_jsonl(
    path: Path, query: FindingsQuery, *, tail_bytes: int | None = None
) -> list[FindingRow]:
    """Every line of a JSONL verdict store (or, with `tail_bytes`, those in its last bytes)."""
    if not path.is_file():
        raise FindingsError(f"verdict store {path} does not exist: give the sink `process` wrote")
    lines: list[list[FindingRow]] = []
    try:
        with path.open("rb") as handle:
            skip_first = False
            if tail_bytes is not None:
                size = handle.seek(0, 2)
                skip_first = size > tail_bytes
                handle.seek(max(0, size - tail_bytes))
            for number, line in enumerate(handle):
                if skip_first and number == 0:
                    continue  # the tail starts inside a line
                if not line.endswith(b"\n"):
                    break  # a line being appended, or torn by a crash
                found = list(_jsonl_rows(path, line, query))
                if found:
                    lines.append(found)
    except OSError as exc:
        raise FindingsError(f"verdict store {path}: {exc.strerror or exc}") from None
    rows = [row for found in reversed(lines) for row in found]  # newest (last) line first
    return rows if query.limit is None else rows[: query.limit]


def _jsonl_rows(path: Path, line: bytes, query: FindingsQuery) -> Iterator[FindingRow]:
    try:
        record = json.loads(line)
    except ValueError:
        raise FindingsError(
            f"{path} holds a line that is not JSON: not a graphtap JSONL verdict store"
        ) from None
    if not isinstance(record, dict) or "verdict_key" not in record:
        return  # a dead letter or another record kind sharing the file
    try:
        yield from _rows_of_record(record, query)
    except (AttributeError, TypeError, ValueError):
        raise FindingsError(
            f"{path} holds verdict {str(record['verdict_key'])[:80]!r} whose fields are not "
            "graphtap's: not a graphtap JSONL verdict store"
        ) from None


def _rows_of_record(record: dict[str, Any], query: FindingsQuery) -> Iterator[FindingRow]:
    for finding in record.get("findings") or ():
        row = FindingRow(
            processed_at=float(record.get("processed_at") or 0.0),
            severity=str(record.get("severity", "")),
            type=str(finding.get("type", "")),
            confidence=int(finding.get("confidence") or 0),
            count=int(finding.get("count") or 0),
            preview=str(finding.get("preview", "")),
            value_hash=str(finding.get("value_hash", "")),
            conversation_id=record.get("conversation_id"),
            sender_id=record.get("sender_id"),
            change_type=str(record.get("change_type", "")),
            message_id=str(record.get("message_id", "")),
            verdict_key=str(record["verdict_key"]),
            action=action_summary(record.get("action")),
        )
        if query.admits(row):
            yield row


def rows_of(verdict: Verdict) -> list[FindingRow]:
    """A verdict's findings as rows (masked and hashed already: verdicts hold no values)."""
    return [
        FindingRow(
            processed_at=verdict.processed_at,
            severity=verdict.severity,
            type=str(finding.get("type", "")),
            confidence=int(finding.get("confidence") or 0),
            count=int(finding.get("count") or 0),
            preview=str(finding.get("preview", "")),
            value_hash=str(finding.get("value_hash", "")),
            conversation_id=verdict.conversation_id,
            sender_id=verdict.sender_id,
            change_type=verdict.change_type,
            message_id=verdict.message_id,
            verdict_key=verdict.key,
            action=action_summary(verdict.action.to_dict() if verdict.action else None),
        )
        for finding in verdict.findings
    ]


def action_summary(record: Any) -> str | None:
    """An action record as one cell: "block: dry_run", "lift: pending"."""
    if not isinstance(record, dict) or not record.get("action"):
        return None
    return f"{record['action']}: {record.get('state', '?')}"


def latest(kind: str, path: Path, limit: int) -> Sequence[FindingRow]:
    """The status page's table: the newest findings, cheaply (JSONL: only the file's end)."""
    query = FindingsQuery(limit=limit)
    if kind == "jsonl":
        return read_jsonl(path, query, tail_bytes=JSONL_TAIL_BYTES)
    return read_findings(kind, path, query)
