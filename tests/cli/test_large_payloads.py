"""Payloads over 1 MB end to end, as a user runs them: `graphtap simulate` writes the items
Graph would put in blob storage into a folder standing for the payload container, `process
--payload-store` inspects each of them like any other item, and without the file each one is a
`payload_unavailable` letter that `deadletters replay` turns into its verdict once it is there."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from graphtap.simulation.emitter import EVENT_LIMIT_BYTES

from .conftest import graphtap, simulate

STATE = "large-payloads-client-state-0123456789"
HASH_KEY = "5c" * 32
COUNT = 40


@pytest.fixture(scope="module")
def large(cli_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Events of which a quarter are over 1 MB, every message carrying sensitive values."""
    directory = tmp_path_factory.mktemp("large")
    (directory / "hash.key").write_text(HASH_KEY)
    result = simulate(
        cli_keys,
        STATE,
        COUNT,
        "--seed",
        "11",
        "--sensitive-share",
        "1",
        "--large-share",
        "0.25",
        "--payload-store",
        f"local:{directory / 'payloads'}",
        "--out",
        directory / "events.jsonl",
    )
    assert "over 1 MB" in result.stdout
    return directory


def _process(directory: Path, keys: Path, sink: Path, *more: str | Path) -> dict[str, Any]:
    result = graphtap(
        "process",
        "--source",
        f"jsonl:{directory / 'events.jsonl'}",
        "--keys",
        keys,
        "--client-state",
        STATE,
        "--sink",
        f"sqlite:{sink}",
        "--hash-key-file",
        directory / "hash.key",
        "--json",
        *more,
    )
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def _large_items(directory: Path) -> dict[str, str]:
    """additionalPayloadStorageId -> message id, from the events and the blobs they name."""
    found = {}
    for line in (directory / "events.jsonl").read_text().splitlines():
        for item in json.loads(line)["value"]:
            if storage_id := item.get("additionalPayloadStorageId"):
                blob = json.loads((directory / "payloads" / storage_id).read_bytes())
                found[storage_id] = blob["resourceData"]["id"]
    return found


def _verdicts(sink: Path) -> dict[str, list[tuple[str, str, list[str]]]]:
    """message id -> (verdict key, content, finding types) of each of its verdicts."""
    with sqlite3.connect(sink) as db:
        rows = db.execute(
            "SELECT message_id, verdict_key, content, findings FROM verdicts ORDER BY verdict_key"
        ).fetchall()
    found: dict[str, list[tuple[str, str, list[str]]]] = {}
    for message, key, content, findings in rows:
        types = sorted(f["type"] for f in json.loads(findings))
        found.setdefault(message, []).append((key, content, types))
    return found


def _inline(directory: Path, target: Path) -> None:
    """The same events with each payload put back into its item, as if it had fitted."""
    target.mkdir()
    lines = []
    for line in (directory / "events.jsonl").read_text().splitlines():
        body = json.loads(line)
        for item in body["value"]:
            if storage_id := item.pop("additionalPayloadStorageId", None):
                item.update(json.loads((directory / "payloads" / storage_id).read_bytes()))
        lines.append(json.dumps(body))
    (target / "events.jsonl").write_text("\n".join(lines) + "\n")
    (target / "hash.key").write_text(HASH_KEY)


def test_every_large_message_is_inspected_as_if_it_had_fitted(
    large: Path, cli_keys: Path, tmp_path: Path
) -> None:
    items = _large_items(large)
    assert len(items) >= 5
    for storage_id in items:
        blob = json.loads((large / "payloads" / storage_id).read_bytes())
        assert set(blob) == {"resource", "resourceData", "encryptedContent"}
        assert len(blob["encryptedContent"]["data"]) > EVENT_LIMIT_BYTES
    payloads = f"local:{large / 'payloads'}"
    summary = _process(large, cli_keys, tmp_path / "large.sqlite", "--payload-store", payloads)
    assert summary["dead_letters_by_reason"] == {}
    assert summary["verdicts"] == COUNT
    got = _verdicts(tmp_path / "large.sqlite")
    assert set(items.values()) <= set(got)
    assert all(content == "inspected" and types for _, content, types in _latest(got, items))
    # Each verdict is the one the message would have got had it fitted in the event.
    _inline(large, tmp_path / "inline")
    inline = _process(
        tmp_path / "inline", cli_keys, tmp_path / "inline.sqlite", "--max-event-bytes", "4000000"
    )
    assert inline["dead_letters_by_reason"] == {}
    assert _verdicts(tmp_path / "inline.sqlite") == got


def _latest(
    verdicts: dict[str, list[tuple[str, str, list[str]]]], items: dict[str, str]
) -> list[tuple[str, str, list[str]]]:
    """Every verdict of the messages that were large at least once."""
    return [verdict for message in set(items.values()) for verdict in verdicts.get(message, [])]


def test_a_missing_payload_is_a_letter_that_replay_turns_into_its_verdict(
    large: Path, cli_keys: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    store = tmp_path / "store.sqlite"
    summary = _process(large, cli_keys, store, "--payload-store", f"local:{empty}")
    items = _large_items(large)
    assert summary["dead_letters_by_reason"] == {"payload_unavailable": len(items)}
    assert summary["verdicts"] == COUNT - len(items)
    before = _verdicts(store)

    def replay(payloads: Path) -> tuple[int, str]:
        result = graphtap(
            "deadletters",
            "replay",
            "--store",
            f"sqlite:{store}",
            "--reason",
            "payload_unavailable",
            "--keys",
            cli_keys,
            "--client-state",
            STATE,
            "--sink",
            f"sqlite:{store}",
            "--hash-key-file",
            large / "hash.key",
            "--payload-store",
            f"local:{payloads}",
            check=False,
        )
        return result.returncode, result.stdout

    status, output = replay(empty)  # still missing: nothing is marked, nothing is lost
    assert status == 1
    assert "still failing" in output
    status, output = replay(large / "payloads")
    assert status == 0, output
    after = _verdicts(store)
    assert sum(map(len, after.values())) == COUNT
    assert sum(map(len, after.values())) - sum(map(len, before.values())) == len(items)
    assert set(items.values()) <= set(after)


def test_a_bad_payload_store_is_named(large: Path, cli_keys: Path, tmp_path: Path) -> None:
    result = graphtap(
        "process",
        "--source",
        f"jsonl:{large / 'events.jsonl'}",
        "--keys",
        cli_keys,
        "--client-state",
        STATE,
        "--sink",
        f"sqlite:{tmp_path / 'v.sqlite'}",
        "--payload-store",
        f"local:{tmp_path / 'missing'}",
        check=False,
    )
    assert result.returncode == 2
    assert "--payload-store" in result.stderr
    assert "is not a folder" in result.stderr
