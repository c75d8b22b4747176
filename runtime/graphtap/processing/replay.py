"""Dead letters read back and replayed once their cause is fixed (a key loaded late, say).

One small interface over the three stores dead letters are written to (SQLite, JSONL, the
Blob container): list letters by reason and time, fetch one with its kept event body, mark
letters replayed. `replay` puts each body's clientState back (`ClientStateMask.restore`),
runs the bodies through the pipeline and commits through `BatchCommitter`, like any batch:
verdict keys make a second replay add nothing, and a letter whose cause is not fixed
dead-letters again under the same key, so it is not duplicated and stays unmarked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from graphtap.processing.committer import BatchCommitter
from graphtap.processing.deadletters import (
    ClientStateMask,
    DeadEvent,
    DeadLetter,
    parse_ranges,
    ranges_overlap,
)
from graphtap.processing.fetch import ContentFetcher
from graphtap.processing.fetched import Fetched, Payload
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.outbox import ActionOutbox, ActionSink
from graphtap.processing.pipeline import Pipeline, PipelineSettings
from graphtap.processing.sinks import AsyncDeadLetterStore, AsyncVerdictSink
from graphtap.processing.sinks.jsonl import JsonlLog
from graphtap.processing.sources import SourceEvent
from graphtap.processing.summary import Summary


class DeadLetterStoreError(RuntimeError):
    """A dead-letter store that cannot be read (missing, damaged, not graphtap's)."""


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter as a store holds it; `replayed_at` is set once a replay fixed it."""

    key: str
    reason: str
    message: str
    items: str | None
    item_count: int
    event_key: str
    partition: str
    offset: int
    occurred_at: float
    replayed_at: float | None = None

    def __post_init__(self) -> None:
        if self.items is not None:
            parse_ranges(self.items)  # the positions a replay compares: ValueError if not

    @classmethod
    def from_record(cls, record: dict[str, Any], replayed_at: float | None) -> StoredLetter:
        source = record.get("source") or {}
        return cls(
            key=str(record["dead_letter_key"]),
            reason=str(record["reason"]),
            message=str(record.get("message", "")),
            items=record.get("items"),
            item_count=int(record.get("item_count", 1)),
            event_key=str(record["event_key"]),
            partition=str(source.get("partition", "")),
            offset=int(source.get("offset", -1)),
            occurred_at=float(record.get("occurred_at", 0.0)),
            replayed_at=replayed_at,
        )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event body as kept for its letters: clientStates masked, maybe only a prefix."""

    key: str
    size: int
    truncated: bool
    body: str = field(repr=False)
    #: Payloads handed over beside the body, by item index (see `DeadEvent.payloads`).
    payloads: dict[int, dict[str, Any]] | None = field(default=None, repr=False)

    def fetched(self) -> dict[int, Fetched] | None:
        """The payloads as the pipeline reads them, as when the body first came."""
        if not self.payloads:
            return None
        return {index: Payload(p, handed_over=True) for index, p in self.payloads.items()}


@dataclass(frozen=True, slots=True)
class LetterFilter:
    reason: str | None = None
    since: float | None = None  # epoch seconds
    include_replayed: bool = True

    def admits(self, letter: StoredLetter) -> bool:
        return (
            (self.reason is None or letter.reason == self.reason)
            and (self.since is None or letter.occurred_at >= self.since)
            and (self.include_replayed or letter.replayed_at is None)
        )


class DeadLetterReader(Protocol):
    """What `graphtap deadletters` needs of a store; async, since one of them is Blob."""

    location: str

    async def letters(self, where: LetterFilter) -> list[StoredLetter]:
        """Matching letters, oldest first."""
        ...

    async def letter(self, key: str) -> StoredLetter | None: ...

    async def event(self, event_key: str) -> StoredEvent | None: ...

    async def mark_replayed(self, keys: Sequence[str], at: float) -> None:
        """Durably note that these letters were replayed without failing again."""
        ...

    async def close(self) -> None: ...


def _event_from_record(record: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        key=str(record["event_key"]),
        size=int(record.get("size", 0)),
        truncated=bool(record.get("truncated", False)),
        body=str(record.get("body", "")),
        payloads=_payloads(record.get("payloads"), str(record["event_key"])),
    )


def _payloads(stored: object, event_key: str) -> dict[int, dict[str, Any]] | None:
    """`DeadEvent.payloads` as stored (a JSON object keyed by item index), or None."""
    if stored is None:
        return None
    problem = f"dead-letter event {event_key[:64]}: its payloads are not objects by item index"
    try:
        loaded = orjson.loads(stored) if isinstance(stored, str) else stored
        if not isinstance(loaded, dict) or not all(isinstance(p, dict) for p in loaded.values()):
            raise DeadLetterStoreError(problem)
        return {int(index): payload for index, payload in loaded.items()}
    except (orjson.JSONDecodeError, ValueError):
        raise DeadLetterStoreError(problem) from None


def _stored_object(data: bytes, where: str) -> dict[str, Any]:
    """A record of a JSONL or Blob store, which is one JSON object; else an error naming it."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise DeadLetterStoreError(f"{where} is not JSON; not a dead-letter store") from None
    if not isinstance(record, dict):
        raise DeadLetterStoreError(f"{where} is not a JSON object; not a dead-letter store")
    return record


@contextlib.contextmanager
def _fields_of(where: str) -> Iterator[None]:
    """Reading a record's fields: one missing or of the wrong type is an error naming it."""
    try:
        yield
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DeadLetterStoreError(
            f"{where}: not a dead-letter record ({type(exc).__name__}: {exc})"
        ) from None


_REPLAYS = """CREATE TABLE IF NOT EXISTS dead_letter_replays (
    dead_letter_key TEXT PRIMARY KEY,
    replayed_at REAL NOT NULL
)"""


_SELECT_EVENT = (
    "SELECT event_key, size, truncated, body, payloads FROM dead_letter_events WHERE event_key = ?"
)
# Stores written before payloads were kept beside bodies have no such column.
_SELECT_EVENT_BEFORE_PAYLOADS = _SELECT_EVENT.replace("payloads FROM", "NULL FROM")


class SqliteDeadLetterReader:
    """The `dead_letters` and `dead_letter_events` tables; marks go to `dead_letter_replays`."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise DeadLetterStoreError(f"{path}: no such dead-letter store")
        self.location = f"sqlite:{path}"
        self._db = sqlite3.connect(path)
        try:
            tables = {
                row[0]
                for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DeadLetterStoreError(f"{path}: not a graphtap store ({exc})") from None
        if not {"dead_letters", "dead_letter_events"} <= tables:
            self._db.close()
            raise DeadLetterStoreError(f"{path}: holds no dead letters (run graphtap process)")
        self._marks = "dead_letter_replays" in tables
        columns = self._db.execute("PRAGMA table_info(dead_letter_events)").fetchall()
        self._event_payloads = any(column[1] == "payloads" for column in columns)

    _SELECT = (
        "SELECT d.dead_letter_key, d.reason, d.message, d.items, d.item_count, d.event_key,"
        " d.partition, d.offset, d.occurred_at, {replayed} FROM dead_letters d {join}"
    )

    def _query(self, where: str, parameters: Sequence[object]) -> list[StoredLetter]:
        sql = self._SELECT.format(
            replayed="r.replayed_at" if self._marks else "NULL",
            join=("LEFT JOIN dead_letter_replays r USING (dead_letter_key)" if self._marks else ""),
        )
        rows = self._db.execute(f"{sql} {where}", parameters).fetchall()
        letters = []
        for row in rows:
            with _fields_of(f"{self.location}: dead letter {str(row[0])[:100]}"):
                letters.append(StoredLetter(*row))
        return letters

    async def letters(self, where: LetterFilter) -> list[StoredLetter]:
        clauses: list[str] = []
        parameters: list[object] = []
        if where.reason is not None:
            clauses.append("d.reason = ?")
            parameters.append(where.reason)
        if where.since is not None:
            clauses.append("d.occurred_at >= ?")
            parameters.append(where.since)
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        found = self._query(f"{condition} ORDER BY d.occurred_at, d.id", parameters)
        return [letter for letter in found if where.admits(letter)]

    async def letter(self, key: str) -> StoredLetter | None:
        found = self._query("WHERE d.dead_letter_key = ?", (key,))
        return found[0] if found else None

    async def event(self, event_key: str) -> StoredEvent | None:
        row = self._db.execute(
            _SELECT_EVENT if self._event_payloads else _SELECT_EVENT_BEFORE_PAYLOADS,
            (event_key,),
        ).fetchone()
        if row is None:
            return None
        return StoredEvent(row[0], row[1], bool(row[2]), row[3], _payloads(row[4], row[0]))

    async def mark_replayed(self, keys: Sequence[str], at: float) -> None:
        with self._db:
            self._db.execute(_REPLAYS)
            self._db.executemany(
                "INSERT OR IGNORE INTO dead_letter_replays VALUES (?, ?)", [(k, at) for k in keys]
            )
        self._marks = True

    async def close(self) -> None:
        self._db.close()


class JsonlDeadLetterReader:
    """A JSONL dead-letter file; a mark is an appended record with `replay_key`."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise DeadLetterStoreError(f"{path}: no such dead-letter store")
        self.path = path
        self.location = f"jsonl:{path}"

    def _read(self) -> tuple[dict[str, StoredLetter], dict[str, StoredEvent]]:
        records: list[tuple[str, dict[str, Any]]] = []
        events: dict[str, StoredEvent] = {}
        marks: dict[str, float] = {}
        with self.path.open("rb") as lines:
            for number, line in enumerate(lines, 1):
                if not line.endswith(b"\n"):
                    break  # a torn tail: its batch was never checkpointed
                where = f"{self.path}: line {number}"
                record = _stored_object(line, where)
                with _fields_of(where):
                    if "dead_letter_key" in record:
                        records.append((where, record))
                    elif "replay_key" in record:
                        marks.setdefault(str(record["replayed"]), float(record["replayed_at"]))
                    elif "event_key" in record:
                        events[str(record["event_key"])] = _event_from_record(record)
        letters: dict[str, StoredLetter] = {}
        for where, record in records:
            with _fields_of(where):
                key = str(record["dead_letter_key"])
                letters[key] = StoredLetter.from_record(record, marks.get(key))
        return letters, events

    async def letters(self, where: LetterFilter) -> list[StoredLetter]:
        letters, _ = self._read()
        return sorted((x for x in letters.values() if where.admits(x)), key=lambda x: x.occurred_at)

    async def letter(self, key: str) -> StoredLetter | None:
        return self._read()[0].get(key)

    async def event(self, event_key: str) -> StoredEvent | None:
        return self._read()[1].get(event_key)

    async def mark_replayed(self, keys: Sequence[str], at: float) -> None:
        log = JsonlLog(self.path, "dead_letter_key", "event_key", "replay_key")
        try:
            log.append(
                {"replay_key": f"{key}:replayed", "replayed": key, "replayed_at": at}
                for key in keys
            )
        finally:
            log.close()

    async def close(self) -> None:
        return None


def replay_marker_name(key: str) -> str:
    return f"replayed/{key.replace(':', '-')}.json"


class BlobDeadLetterReader:
    """The dead-letter container: `<reason>/<key>.json`, `events/<key>.json`, and a marker
    blob `replayed/<key>.json` per replayed letter."""

    def __init__(self, container: Any, location: str) -> None:
        self._container = container  # azure.storage.blob.aio.ContainerClient
        self.location = location

    @classmethod
    def open(cls, account_url: str, container: str, **client_options: Any) -> BlobDeadLetterReader:
        """`client_options` go to the `ContainerClient` (credential, a transport)."""
        from azure.storage.blob.aio import ContainerClient

        return cls(
            ContainerClient(account_url, container, **client_options),
            f"blob:{account_url.rstrip('/')}/{container}",
        )

    async def _json(self, name: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            download = await self._container.download_blob(name)
            data = await download.readall()
        except ResourceNotFoundError:
            return None
        return _stored_object(data, self._where(name))

    def _where(self, name: str) -> str:
        return f"{self.location}: blob {name}"

    async def letters(self, where: LetterFilter) -> list[StoredLetter]:
        names = [blob.name async for blob in self._container.list_blobs()]
        marked = {n.removeprefix("replayed/") for n in names if n.startswith("replayed/")}
        found = []
        for name in names:
            reason, _, rest = name.partition("/")
            if reason in ("events", "replayed") or not rest:
                continue
            if where.reason is not None and reason != where.reason:
                continue
            record = await self._json(name)
            if record is None:
                continue
            with _fields_of(self._where(name)):
                letter = StoredLetter.from_record(record, None)
            if rest in marked:
                mark_name = f"replayed/{rest}"
                mark = await self._json(mark_name)
                with _fields_of(self._where(mark_name)):
                    letter = _replayed(letter, mark)
            if where.admits(letter):
                found.append(letter)
        return sorted(found, key=lambda x: x.occurred_at)

    async def letter(self, key: str) -> StoredLetter | None:
        _, _, reason = key.rpartition(":")
        name = f"{reason}/{key.replace(':', '-')}.json"
        record = await self._json(name)
        if record is None:
            return None
        mark = await self._json(replay_marker_name(key))
        with _fields_of(self._where(name)):
            return _replayed(StoredLetter.from_record(record, None), mark)

    async def event(self, event_key: str) -> StoredEvent | None:
        name = f"events/{event_key}.json"
        record = await self._json(name)
        if record is None:
            return None
        with _fields_of(self._where(name)):
            return _event_from_record(record)

    async def mark_replayed(self, keys: Sequence[str], at: float) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        for key in keys:
            with contextlib.suppress(ResourceExistsError):  # marked by an earlier replay
                await self._container.upload_blob(
                    replay_marker_name(key),
                    orjson.dumps({"dead_letter_key": key, "replayed_at": at}),
                    overwrite=False,
                    content_settings=ContentSettings(content_type="application/json"),
                )

    async def close(self) -> None:
        await self._container.close()


def _replayed(letter: StoredLetter, mark: dict[str, Any] | None) -> StoredLetter:
    if mark is None:
        return letter
    return StoredLetter(
        letter.key,
        letter.reason,
        letter.message,
        letter.items,
        letter.item_count,
        letter.event_key,
        letter.partition,
        letter.offset,
        letter.occurred_at,
        float(mark.get("replayed_at", 0.0)),
    )


@dataclass
class ReplayReport:
    """What a replay did: letters fixed (and marked), letters still failing, and why."""

    replayed: list[StoredLetter] = field(default_factory=list)
    still_failing: list[tuple[StoredLetter, str]] = field(default_factory=list)
    events: int = 0
    new_verdicts: int = 0


#: Events replayed and committed together.
REPLAY_BATCH_EVENTS = 256


async def replay(
    reader: DeadLetterReader,
    letters: Sequence[StoredLetter],
    *,
    settings: PipelineSettings,
    sink: AsyncVerdictSink,
    dead_letters: AsyncDeadLetterStore,
    lifecycle: LifecycleQueue,
    pipeline: Pipeline | None = None,
    outbox: ActionOutbox | ActionSink | None = None,
    fetcher: ContentFetcher | None = None,
) -> ReplayReport:
    """Replay `letters`' event bodies through the pipeline and commit them, a batch at a time;
    mark the letters that did not fail again, each batch only after its commit returned.
    `fetcher` reads what the events point at (large payloads, Outlook messages) as the live
    path does."""
    report = ReplayReport()
    by_event: dict[str, list[StoredLetter]] = {}
    for letter in letters:
        by_event.setdefault(letter.event_key, []).append(letter)
    groups = list(by_event.values())
    if pipeline is None and groups:
        pipeline = Pipeline.from_settings(settings)
    committer = BatchCommitter(
        sink=sink, dead_letters=dead_letters, lifecycle=lifecycle, summary=Summary(), outbox=outbox
    )
    for first in range(0, len(groups), REPLAY_BATCH_EVENTS):
        assert pipeline is not None
        await _replay_batch(
            reader,
            groups[first : first + REPLAY_BATCH_EVENTS],
            settings,
            pipeline,
            committer,
            report,
            fetcher,
        )
    report.new_verdicts = committer.summary.verdicts
    return report


async def _replay_batch(
    reader: DeadLetterReader,
    groups: Sequence[list[StoredLetter]],
    settings: PipelineSettings,
    pipeline: Pipeline,
    committer: BatchCommitter,
    report: ReplayReport,
    fetcher: ContentFetcher | None,
) -> None:
    mask = ClientStateMask((), settings.inspection.hash_key)
    batch: list[SourceEvent] = []
    batch_letters: list[list[StoredLetter]] = []
    stored_events: list[DeadEvent] = []
    for its_letters in groups:
        event = await reader.event(its_letters[0].event_key)
        if event is None:
            report.still_failing += [(x, "its event body is not in the store") for x in its_letters]
            continue
        if event.truncated:
            report.still_failing += [
                (x, f"only a prefix of its {event.size}-byte body was kept") for x in its_letters
            ]
            continue
        body = mask.restore(event.body, settings.client_states)
        partition, offset = its_letters[0].partition, its_letters[0].offset
        batch.append(SourceEvent(partition, offset, body, event.fetched()))
        batch_letters.append(its_letters)
        stored_events.append(
            DeadEvent(event.key, event.size, event.body, False, partition, offset, event.payloads)
        )
    if not batch:
        return
    if fetcher is not None:
        await fetcher.fill(batch)
    results = pipeline.process_batch(batch)
    for result, stored in zip(results, stored_events, strict=True):
        result.dead_letters = _kept_as(result.dead_letters, stored)

    async def no_checkpoint() -> None:
        return None  # a replay reads from a dead-letter store, not from a hub

    await committer.commit(results, events=len(batch), checkpoint=no_checkpoint)
    report.events += len(batch)
    fixed: list[StoredLetter] = []
    for result, its_letters in zip(results, batch_letters, strict=True):
        for letter in its_letters:
            again = _failed_again(letter, result.dead_letters)
            if again is None:
                fixed.append(letter)
            elif str(again.reason) == letter.reason:
                report.still_failing.append((letter, again.message))
            else:
                report.still_failing.append((letter, f"now {again.reason}: {again.message}"))
    if fixed:
        await reader.mark_replayed([x.key for x in fixed], time.time())
    report.replayed += fixed


def _kept_as(letters: list[DeadLetter], stored: DeadEvent) -> list[DeadLetter]:
    """A replayed body's new letters, referring to the event as it is already kept. The
    restored body can differ from the one first received (a forged clientState is never put
    back), so letters keyed on its hash would repeat the old ones under new keys, with a body
    masked twice that no replay could restore."""
    return [
        dataclasses.replace(letter, key=f"{stored.key}:{letter.reason}", event=stored)
        for letter in letters
    ]


def _failed_again(letter: StoredLetter, letters: list[DeadLetter]) -> DeadLetter | None:
    """The new letter that holds any of `letter`'s items (or the whole event again), or None
    when every one of them got past the dead letters: only then is the letter fixed. Items
    that now fail for another reason are not fixed; that letter holds them."""
    for again in letters:
        if again.items is None:
            return again
        if letter.items is not None and ranges_overlap(letter.items, again.items):
            return again
    return None


STORE_KINDS = ("sqlite", "jsonl", "blob")


@dataclass(frozen=True, slots=True)
class StoreName:
    """`sqlite:FILE`, `jsonl:FILE` or `blob:https://ACCOUNT.blob.core.windows.net/CONTAINER`."""

    kind: str
    location: str

    @classmethod
    def parse(cls, text: str) -> StoreName:
        kind, separator, location = text.partition(":")
        if not separator or kind not in STORE_KINDS or not location:
            raise ValueError(
                f"{text!r}: give sqlite:FILE, jsonl:FILE or "
                "blob:https://ACCOUNT.blob.core.windows.net/CONTAINER"
            )
        if kind == "blob":
            account, _, container = location.rstrip("/").rpartition("/")
            if not account.startswith("https://") or "/" in account.removeprefix("https://"):
                raise ValueError(f"{text!r}: a blob store is blob:https://ACCOUNT_URL/CONTAINER")
            if not container:
                raise ValueError(f"{text!r}: name the container after the account URL")
        return cls(kind, location)

    @property
    def account_url(self) -> str:
        return self.location.rstrip("/").rpartition("/")[0]

    @property
    def container(self) -> str:
        return self.location.rstrip("/").rpartition("/")[2]

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


def open_reader(store: StoreName, **blob_options: Any) -> DeadLetterReader:
    """The reader for a store; `blob_options` go to the Blob `ContainerClient` (credential)."""
    if store.kind == "sqlite":
        return SqliteDeadLetterReader(Path(store.location))
    if store.kind == "jsonl":
        return JsonlDeadLetterReader(Path(store.location))
    return BlobDeadLetterReader.open(store.account_url, store.container, **blob_options)
