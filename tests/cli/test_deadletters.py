"""`graphtap deadletters` against stores the real pipeline wrote: a key loaded late, replayed."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from graphtap.notifications.errors import Reason
from graphtap.processing.deadletters import ClientStateMask, DeadLetter, Failures, for_event
from graphtap.processing.sinks.jsonl import JsonlDeadLetters

from .conftest import graphtap, simulate

STATE = "deadletters-client-state-0123456789"
HASH_KEY = "6b" * 32
COUNT = 60


@pytest.fixture(scope="module")
def late_key(cli_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with events encrypted for `cli-cert`, a key ring without it, the hash key."""
    directory = tmp_path_factory.mktemp("deadletters")
    graphtap("keys", "create", "--out", directory / "other", "--id", "other-cert")
    (directory / "hash.key").write_text(HASH_KEY)
    simulate(
        cli_keys,
        STATE,
        COUNT,
        "--seed",
        "5",
        "--fault-share",
        "0",
        "--out",
        directory / "events.jsonl",
    )
    return directory


def process(directory: Path, sink: str) -> None:
    graphtap(
        "process",
        "--source",
        f"jsonl:{directory / 'events.jsonl'}",
        "--keys",
        directory / "other",
        "--client-state",
        STATE,
        "--sink",
        sink,
        "--hash-key-file",
        directory / "hash.key",
    )


def replay(directory: Path, store: str, sink: str, keys: Path, *more: str) -> tuple[int, str]:
    result = graphtap(
        "deadletters",
        "replay",
        "--store",
        store,
        "--reason",
        "unknown_certificate",
        "--keys",
        keys,
        "--sink",
        sink,
        "--hash-key-file",
        directory / "hash.key",
        *more,
        check=False,
    )
    assert STATE not in result.stdout + result.stderr
    return result.returncode, result.stdout + result.stderr


def verdict_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT verdict_key FROM verdicts")]


@pytest.fixture(autouse=True)
def client_state_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret reaches `replay` as an operator gives it: out of the process list."""
    monkeypatch.setenv("GRAPHTAP_CLIENT_STATES", STATE)
    monkeypatch.setenv("COLUMNS", "160")  # rich's width: whole rows, as a wide terminal shows


def test_a_key_loaded_late_is_replayed_into_the_sink_once(
    late_key: Path, cli_keys: Path, tmp_path: Path
) -> None:
    store = tmp_path / "verdicts.sqlite"
    process(late_key, f"sqlite:{store}")
    before = verdict_keys(store)  # deletions carry no content: verdicts without the key
    listed = graphtap("deadletters", "list", "--store", f"sqlite:{store}", "--since", "1h")
    rows = [line for line in listed.stdout.splitlines() if "unknown_certificate" in line]
    assert rows
    assert all(row.rstrip().endswith("-") for row in rows)  # none replayed yet

    code, output = replay(late_key, f"sqlite:{store}", f"sqlite:{store}", cli_keys)
    assert code == 0, output
    assert "0 still failing" in output
    first = verdict_keys(store)
    assert len(first) == len(set(first)) > len(before)
    assert f"{len(first) - len(before)} new verdict(s)" in output

    pending = graphtap("deadletters", "list", "--store", f"sqlite:{store}", "--pending")
    assert "No dead letters" in pending.stdout
    marked = graphtap("deadletters", "list", "--store", f"sqlite:{store}")
    rows = [line for line in marked.stdout.splitlines() if "unknown_certificate" in line]
    assert rows
    assert all(row.rstrip().endswith("yes") for row in rows)

    code, output = replay(late_key, f"sqlite:{store}", f"sqlite:{store}", cli_keys, "--again")
    assert code == 0, output
    assert "0 new verdict(s)" in output
    assert sorted(verdict_keys(store)) == sorted(first)


def test_a_cause_not_fixed_is_reported_and_exits_1_without_duplicates(
    late_key: Path, tmp_path: Path
) -> None:
    store = tmp_path / "verdicts.sqlite"
    process(late_key, f"sqlite:{store}")
    with sqlite3.connect(store) as db:
        before = db.execute("SELECT count(*) FROM dead_letters").fetchone()
    code, output = replay(late_key, f"sqlite:{store}", f"sqlite:{store}", late_key / "other")
    assert code == 1
    assert "still failing" in output
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == before
    pending = graphtap("deadletters", "list", "--store", f"sqlite:{store}", "--pending")
    assert "unknown_certificate" in pending.stdout


def test_a_jsonl_store_is_listed_shown_replayed_and_marked(
    late_key: Path, cli_keys: Path, tmp_path: Path
) -> None:
    sink = tmp_path / "verdicts.jsonl"
    process(late_key, f"jsonl:{sink}")
    before = len(sink.read_text().splitlines())
    letters = tmp_path / "verdicts.dead-letters.jsonl"
    records = [json.loads(line) for line in letters.read_text().splitlines()]
    key = next(r["dead_letter_key"] for r in records if "dead_letter_key" in r)

    shown = graphtap("deadletters", "show", "--store", f"jsonl:{letters}", key[:12])
    assert "unknown_certificate" in shown.stdout
    assert "cli-cert" in shown.stdout  # the certificate the items name
    assert "clientState masked" in shown.stdout
    assert STATE not in shown.stdout
    body = next(r["body"] for r in records if "body" in r)
    encrypted = json.loads(body)["value"][0]["encryptedContent"]
    for field in ("data", "dataKey", "dataSignature"):
        assert encrypted[field][:24] not in shown.stdout  # routing fields only

    code, output = replay(late_key, f"jsonl:{letters}", f"jsonl:{sink}", cli_keys)
    assert code == 0, output
    verdicts = [json.loads(line)["verdict_key"] for line in sink.read_text().splitlines()]
    assert len(verdicts) == len(set(verdicts)) > before
    code, output = replay(late_key, f"jsonl:{letters}", f"jsonl:{sink}", cli_keys, "--again")
    assert code == 0, output
    assert len(sink.read_text().splitlines()) == len(verdicts)
    marks = [json.loads(line) for line in letters.read_text().splitlines()]
    assert {m["replayed"] for m in marks if "replay_key" in m} == {
        r["dead_letter_key"] for r in records if "dead_letter_key" in r
    }
    pending = graphtap("deadletters", "list", "--store", f"jsonl:{letters}", "--pending")
    assert "No dead letters" in pending.stdout


def shown_from_jsonl(letter: DeadLetter, path: Path) -> subprocess.CompletedProcess[str]:
    """`deadletters show` of `letter`, written into a JSONL store at `path` by the processor's
    own store."""
    store = JsonlDeadLetters(path)
    store.write_dead_letters([letter])
    store.close()
    return graphtap("deadletters", "show", "--store", f"jsonl:{path}", letter.key)


def test_show_adds_a_payload_kept_beside_the_body_to_its_item(tmp_path: Path) -> None:
    """A gap-resync item over 512 KB names its content only through the payload kept beside
    the body: `show` routes it by that payload's resource and certificate."""
    item = {
        "subscriptionId": "sub-1",
        "changeType": "created",
        "clientState": STATE,
        "tenantId": "tenant-1",
        "additionalPayloadStorageId": "resync-" + "ab" * 32,
    }
    encrypted = {
        "data": "RU5DUllQVEVELUNPTlRFTlQtU0hPVUxELU5PVC1TSE9X",
        "dataKey": "a2V5",
        "dataSignature": "c2ln",
        "encryptionCertificateId": "resync-cert",
        "encryptionCertificateThumbprint": "00" * 20,
    }
    payload = {
        "resource": "chats('19:a@thread.v2')/messages('1700000000000')",
        "resourceData": {"id": "1700000000000"},
        "encryptedContent": encrypted,
    }
    failures = Failures()
    failures.add(Reason.UNKNOWN_CERTIFICATE, "no key for resync-cert", 0)
    [letter] = for_event(
        json.dumps({"value": [item]}).encode(),
        failures,
        partition="resync",
        offset=1,
        occurred_at=1.0,
        mask=ClientStateMask([STATE], bytes.fromhex(HASH_KEY)),
        payloads={0: payload},
    )
    shown = shown_from_jsonl(letter, tmp_path / "dead.jsonl")
    assert "1 payload(s) kept beside it" in shown.stdout
    assert "resource=chats('19:a@thread.v2')/messages('1700000000000')" in shown.stdout
    assert "encryptionCertificateId=resync-cert" in shown.stdout
    assert encrypted["data"][:24] not in shown.stdout
    assert STATE not in shown.stdout


def test_a_replay_under_a_smaller_size_limit_marks_nothing(
    late_key: Path, cli_keys: Path, tmp_path: Path
) -> None:
    store = tmp_path / "verdicts.sqlite"
    process(late_key, f"sqlite:{store}")
    code, output = replay(
        late_key, f"sqlite:{store}", f"sqlite:{store}", cli_keys, "--max-event-bytes", "1024"
    )
    assert code == 1
    assert "now oversized_event" in output
    pending = graphtap("deadletters", "list", "--store", f"sqlite:{store}", "--pending")
    assert "unknown_certificate" in pending.stdout


def test_show_reads_a_malformed_item_and_list_names_a_line_that_is_no_record(
    tmp_path: Path,
) -> None:
    failures = Failures()
    failures.add(Reason.MALFORMED_NOTIFICATION, "encryptedContent is not an object", 0)
    item = {"subscriptionId": "sub-1", "changeType": "created", "encryptedContent": "x"}
    [letter] = for_event(
        json.dumps({"value": [item]}).encode(), failures, partition="0", offset=3, occurred_at=1.0
    )
    shown = shown_from_jsonl(letter, tmp_path / "dead.jsonl")
    assert "subscriptionId=sub-1, changeType=created" in shown.stdout

    with (tmp_path / "dead.jsonl").open("a") as lines:
        lines.write("5\n")
    listed = graphtap(
        "deadletters", "list", "--store", f"jsonl:{tmp_path / 'dead.jsonl'}", check=False
    )
    assert listed.returncode == 1
    assert "line 3 is not a JSON object" in listed.stderr
    assert "Traceback" not in listed.stderr


def test_a_missing_store_and_a_missing_hash_key_are_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = graphtap(
        "deadletters", "list", "--store", f"sqlite:{tmp_path / 'none.sqlite'}", check=False
    )
    assert missing.returncode != 0
    assert "no such dead-letter store" in missing.stderr
    monkeypatch.delenv("GRAPHTAP_FINDING_HASH_KEY", raising=False)
    no_key = graphtap(
        "deadletters",
        "replay",
        "--store",
        f"sqlite:{tmp_path / 'none.sqlite'}",
        "--reason",
        "unknown_certificate",
        "--keys",
        tmp_path,
        "--sink",
        f"sqlite:{tmp_path / 'v.sqlite'}",
        check=False,
    )
    assert no_key.returncode == 2
    assert "hash key" in no_key.stderr
