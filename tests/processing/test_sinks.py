"""Sinks: durable, idempotent by key, and a torn JSONL tail from a crash is repaired."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from graphtap.notifications.errors import NotificationError, Reason
from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.endpoints import Endpoint, EndpointError, open_stores
from graphtap.processing.sinks import jsonl
from graphtap.processing.sinks.jsonl import JsonlLog, JsonlVerdictSink
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.verdicts import Verdict, verdict_key
from graphtap.transactions import StoreError


def _verdict(message_id: str, version: str | None = "1") -> Verdict:
    key = verdict_key(
        "tenant", f"chats('c')/messages('{message_id}')", message_id, "created", version
    )
    return Verdict(
        key=key,
        tenant_id="tenant",
        subscription_id="s",
        change_type="created",
        resource=f"chats('c')/messages('{message_id}')",
        message_id=message_id,
        conversation_id="c",
        version=version,
        sender_id="u",
        content="inspected",
        severity="none",
        findings=(),
        certificate_id="cert",
        partition="0",
        offset=1,
        processed_at=0.0,
    )


def _dead_letter(body: bytes) -> DeadLetter:
    return DeadLetter.from_error(
        NotificationError(Reason.MALFORMED_EVENT, "not JSON"),
        body=body,
        item_index=None,
        partition="0",
        offset=3,
        occurred_at=0.0,
    )


def test_verdict_key_changes_with_every_component() -> None:
    base = ("t", "r", "m", "created", "v1")
    keys = {verdict_key(*base)}
    for i in range(5):
        changed = list(base)
        changed[i] = changed[i] + "x"
        keys.add(verdict_key(*changed))
    assert len(keys) == 6
    assert verdict_key(*base) == verdict_key(*base)


def test_sqlite_store_ignores_replays(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "v.sqlite")
    assert store.write_verdicts([_verdict("1"), _verdict("2")]) == 2
    assert store.write_verdicts([_verdict("2"), _verdict("2", "2"), _verdict("3")]) == 2
    assert store.write_dead_letters([_dead_letter(b"x"), _dead_letter(b"x")]) == 1
    store.close()
    reopened = SqliteStore(tmp_path / "v.sqlite")
    assert reopened.write_verdicts([_verdict("1")]) == 0


def test_sqlite_store_ignores_replays_of_changes_without_a_version(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "v.sqlite")
    assert store.write_verdicts([_verdict("1", None), _verdict("1", None)]) == 1
    assert store.write_verdicts([_verdict("1", None), _verdict("1", "")]) == 0
    store.close()


_FINDING = {
    "type": "credit_card_number",
    "confidence": 85,
    "count": 1,
    "preview": "****1111",
    "positions": [3],
    "value_hash": "ab12",
}


def _stored(path: Path) -> list[dict[str, object]]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    rows = [dict(row) for row in db.execute("SELECT * FROM verdicts ORDER BY id")]
    db.close()
    return rows


def test_sqlite_store_keeps_every_field_of_a_verdict(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "v.sqlite")
    verdict = dataclasses.replace(_verdict("1"), findings=(_FINDING,), severity="high")
    store.write_verdicts([verdict, _verdict("2", None)])
    store.close()
    first, second = _stored(tmp_path / "v.sqlite")
    record = verdict.to_dict()
    source = record.pop("source")
    assert json.loads(str(first.pop("findings"))) == record.pop("findings")
    assert (first.pop("partition"), first.pop("offset")) == (source["partition"], source["offset"])
    assert first.pop("finding_count") == 1
    first.pop("id")
    assert first == record
    assert (second["version"], second["findings"], second["finding_count"]) == ("", "[]", 0)


# The verdicts table as earlier releases created it: the whole verdict in `record`.
_COMMON_COLUMNS = (
    "tenant_id TEXT NOT NULL, subscription_id TEXT NOT NULL, change_type TEXT NOT NULL,"
    " resource TEXT NOT NULL, message_id TEXT NOT NULL, conversation_id TEXT,"
    " severity TEXT NOT NULL, finding_count INTEGER NOT NULL, processed_at REAL NOT NULL,"
    " record TEXT NOT NULL"
)
_EARLIER_TABLES = {
    "without rowid": f"(verdict_key TEXT PRIMARY KEY, {_COMMON_COLUMNS}) WITHOUT ROWID",
    "unique key": f"(id INTEGER PRIMARY KEY, verdict_key TEXT NOT NULL UNIQUE, {_COMMON_COLUMNS})",
    "version column": f"(id INTEGER PRIMARY KEY, verdict_key TEXT NOT NULL, {_COMMON_COLUMNS},"
    " version TEXT NOT NULL DEFAULT '', UNIQUE (version, verdict_key))",
}


@pytest.mark.parametrize("table", _EARLIER_TABLES.values(), ids=_EARLIER_TABLES.keys())
def test_sqlite_store_from_an_earlier_release_moves_its_records_into_columns(
    tmp_path: Path, table: str
) -> None:
    path = tmp_path / "v.sqlite"
    verdict = dataclasses.replace(_verdict("1"), findings=(_FINDING,), severity="high")
    old = sqlite3.connect(path)
    old.execute(f"CREATE TABLE verdicts {table}")
    old.execute(
        "INSERT INTO verdicts (verdict_key, tenant_id, subscription_id, change_type, resource,"
        " message_id, conversation_id, severity, finding_count, processed_at, record)"
        " VALUES (?, 'tenant', 's', 'created', ?, '1', 'c', 'high', 1, 0, ?)",
        (verdict.key, verdict.resource, json.dumps(verdict.to_dict())),
    )
    old.commit()
    old.close()

    store = SqliteStore(path)
    assert store.write_verdicts([_verdict("1"), _verdict("2"), _verdict("2")]) == 1
    store.close()
    SqliteStore(path).close()  # opening an upgraded store again changes nothing

    moved, added = _stored(path)
    assert "record" not in moved
    assert moved["verdict_key"] == verdict.key
    assert added["message_id"] == "2"
    assert json.loads(str(moved.pop("findings"))) == [_FINDING]
    record = verdict.to_dict()
    assert {column: moved[column] for column in ("version", "sender_id", "certificate_id")} == {
        column: record[column] for column in ("version", "sender_id", "certificate_id")
    }
    assert (moved["partition"], moved["offset"]) == ("0", 1)


def test_jsonl_sink_dedupes_across_reopen_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    sink = JsonlVerdictSink(path)
    assert sink.write_verdicts([_verdict("1"), _verdict("1"), _verdict("2")]) == 2
    sink.close()
    with path.open("ab") as f:
        f.write(b'{"verdict_key": "torn-by-a-cra')
    sink = JsonlVerdictSink(path)
    assert sink.write_verdicts([_verdict("2"), _verdict("3")]) == 1
    sink.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["message_id"] for r in records] == ["1", "2", "3"]
    assert {
        "tenant_id",
        "subscription_id",
        "change_type",
        "resource",
        "message_id",
        "findings",
    } <= set(records[0])


def test_jsonl_sink_refuses_a_corrupt_middle(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    path.write_text('not json\n{"verdict_key": "a"}\n')
    with pytest.raises(ValueError, match="not JSON"):
        JsonlVerdictSink(path)


def test_dead_letters_default_to_the_sinks_store(tmp_path: Path) -> None:
    stores = open_stores(Endpoint("sqlite", tmp_path / "v.sqlite"), None)
    assert stores.sink is stores.dead_letters
    stores.close()
    stores = open_stores(Endpoint("jsonl", tmp_path / "v.jsonl"), None)
    stores.dead_letters.write_dead_letters([_dead_letter(b"\xffraw")])
    stores.close()
    event, letter = map(json.loads, (tmp_path / "v.dead-letters.jsonl").read_text().splitlines())
    assert letter["reason"] == "malformed_event"
    assert letter["event_key"] == event["event_key"]
    assert event["body"] == "\\xffraw"


@pytest.mark.parametrize("text", ["sqlite", "kafka:topic", "jsonl:", "sqlite:/x"])
def test_endpoint_errors_name_the_choices(text: str) -> None:
    if text == "sqlite:/x":
        assert Endpoint.parse(text, allowed=("sqlite",), what="--sink").path == Path("/x")
        return
    with pytest.raises(EndpointError, match="sqlite:PATH"):
        Endpoint.parse(text, allowed=("sqlite", "jsonl"), what="--sink")


# The verdicts table of the release before `findings_truncated` and `finding_total`.
_BEFORE_TRUNCATION = """(
    id INTEGER PRIMARY KEY, verdict_key TEXT NOT NULL, tenant_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL, change_type TEXT NOT NULL, resource TEXT NOT NULL,
    message_id TEXT NOT NULL, version TEXT NOT NULL, conversation_id TEXT, sender_id TEXT,
    content TEXT NOT NULL, severity TEXT NOT NULL, finding_count INTEGER NOT NULL,
    findings TEXT NOT NULL, certificate_id TEXT, partition TEXT NOT NULL,
    offset INTEGER NOT NULL, processed_at REAL NOT NULL, UNIQUE (version, verdict_key)
)"""


def test_both_sinks_say_when_findings_were_left_out_and_count_them_all(tmp_path: Path) -> None:
    verdict = dataclasses.replace(
        _verdict("1"), findings=(_FINDING,), findings_truncated=True, findings_omitted=41
    )
    assert verdict.finding_total == 42
    store = SqliteStore(tmp_path / "v.sqlite")
    store.write_verdicts([verdict, _verdict("2")])
    store.close()
    cut, whole = _stored(tmp_path / "v.sqlite")
    assert (cut["findings_truncated"], cut["finding_total"], cut["finding_count"]) == (1, 42, 1)
    assert (whole["findings_truncated"], whole["finding_total"]) == (0, 0)
    sink = JsonlVerdictSink(tmp_path / "v.jsonl")
    sink.write_verdicts([verdict])
    sink.close()
    record = json.loads((tmp_path / "v.jsonl").read_text())
    assert (record["findings_truncated"], record["finding_total"]) == (True, 42)


def test_sqlite_store_from_before_truncation_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite"
    old = sqlite3.connect(path)
    old.execute(f"CREATE TABLE verdicts {_BEFORE_TRUNCATION}")
    old.execute(
        "INSERT INTO verdicts (verdict_key, tenant_id, subscription_id, change_type, resource,"
        " message_id, version, content, severity, finding_count, findings, partition, offset,"
        " processed_at) VALUES ('k', 't', 's', 'created', 'r', '1', 'v', 'inspected', 'high',"
        " 2, ?, '0', 1, 0)",
        (json.dumps([_FINDING, _FINDING]),),
    )
    old.commit()
    old.close()
    store = SqliteStore(path)
    cut = dataclasses.replace(_verdict("2"), findings_truncated=True, findings_omitted=3)
    assert store.write_verdicts([cut]) == 1
    store.close()
    SqliteStore(path).close()  # a second open finds nothing to add
    earlier, added = _stored(path)
    assert (earlier["findings_truncated"], earlier["finding_total"]) == (0, 2)
    assert (added["findings_truncated"], added["finding_total"]) == (1, 3)


class _FullDisk:
    """A file whose next write stores half the bytes, then fails as a full disk does."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, data: bytes) -> int:
        self._file.write(data[: len(data) // 2])
        self._file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


@pytest.mark.parametrize("failure", ["short write", "fsync"])
def test_a_failed_jsonl_append_leaves_nothing_for_the_batch_that_comes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A full disk shows at the write (part of it stored) or only at the fsync (all of it
    stored): either way the batch is not checkpointed and comes again, and the file must
    then hold each record once, every line whole."""
    path = tmp_path / "verdicts.jsonl"
    log = JsonlLog(path, "verdict_key")
    log.append([{"verdict_key": "k0"}])
    if failure == "short write":
        log._file = _FullDisk(log._file)
    else:
        fsync = os.fsync
        calls = iter([OSError(errno.ENOSPC, "No space left on device")])

        def failing_once(descriptor: int) -> None:
            error = next(calls, None)
            if error is not None:
                raise error
            fsync(descriptor)

        monkeypatch.setattr(jsonl.os, "fsync", failing_once)
    batch = [{"verdict_key": "k1"}, {"verdict_key": "k2"}]
    with pytest.raises(StoreError, match="No space left"):
        log.append(batch)
    assert log.append(batch) == 2
    log.close()
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["verdict_key"] for line in lines] == ["k0", "k1", "k2"]
    JsonlLog(path, "verdict_key").close()  # and the next start reads it
