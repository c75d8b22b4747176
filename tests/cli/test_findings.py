"""`graphtap findings` against stores the real pipeline wrote: filters, formats, read-only."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphtap.hosts.findings import FIELDS, parse_since

from .conftest import GRAPHTAP, simulate

STATE = "findings-client-state-0123456789"
HASH_KEY = "5a" * 32
ORDER = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Stores:
    sqlite: Path
    jsonl: Path


@pytest.fixture(scope="module")
def stores(cli_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Stores:
    directory = tmp_path_factory.mktemp("findings")
    events = directory / "events.jsonl"
    simulate(
        cli_keys,
        STATE,
        400,
        "--seed",
        "11",
        "--sensitive-share",
        "0.4",
        "--out",
        events,
    )
    result = Stores(directory / "verdicts.sqlite", directory / "verdicts.jsonl")
    for sink in (f"sqlite:{result.sqlite}", f"jsonl:{result.jsonl}"):
        run(
            "process",
            "--source",
            f"jsonl:{events}",
            "--keys",
            cli_keys,
            "--client-state",
            STATE,
            "--sink",
            sink,
        )
    return result


def run(*args: str | Path, check: bool = True) -> tuple[int, str, str]:
    import subprocess

    env = {**os.environ, "GRAPHTAP_FINDING_HASH_KEY": HASH_KEY, "COLUMNS": "250"}
    done = subprocess.run(
        [str(GRAPHTAP), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done.returncode, done.stdout, done.stderr


def stored(database: Path) -> list[dict[str, object]]:
    """Every finding in the store, read directly: what the command must list."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT severity, findings, processed_at FROM verdicts WHERE finding_count > 0"
        ).fetchall()
    return [
        {"severity": severity, "processed_at": at, **finding}
        for severity, findings, at in rows
        for finding in json.loads(findings)
    ]


def jsonl(*args: str | Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in run("findings", *args)[1].splitlines()]


def test_jsonl_lists_every_finding_newest_first_and_masked(stores: Stores) -> None:
    expected = stored(stores.sqlite)
    assert len(expected) > 50  # the simulated tenant leaks plenty
    rows = jsonl("--sink", f"sqlite:{stores.sqlite}", "--format", "jsonl")
    assert len(rows) == len(expected)
    assert all(tuple(row) == FIELDS for row in rows)
    with sqlite3.connect(stores.sqlite) as db:
        newest_first = [
            key
            for (key,) in db.execute(
                "SELECT verdict_key FROM verdicts WHERE finding_count > 0 ORDER BY id DESC"
            )
        ]
    listed = [str(row["verdict_key"]) for row in rows]
    assert list(dict.fromkeys(listed)) == newest_first  # each verdict's findings together
    assert sorted((r["type"], r["preview"], r["value_hash"]) for r in rows) == sorted(
        (f["type"], f["preview"], f["value_hash"]) for f in expected
    )
    assert all(str(row["preview"]).startswith("****") for row in rows)
    assert all(row["conversation_id"] and row["sender_id"] for row in rows)


def test_type_filter_is_repeatable(stores: Stores) -> None:
    expected = stored(stores.sqlite)
    wanted = {"password", "credit_card_number"}
    rows = jsonl(
        "--sink",
        f"sqlite:{stores.sqlite}",
        "--format",
        "jsonl",
        "--type",
        "password",
        "--type",
        "credit_card_number",
    )
    assert {row["type"] for row in rows} == wanted
    assert len(rows) == sum(1 for f in expected if f["type"] in wanted)


@pytest.mark.parametrize("minimum", ["medium", "high", "critical"])
def test_severity_is_a_minimum(stores: Stores, minimum: str) -> None:
    expected = stored(stores.sqlite)
    admitted = set(ORDER[ORDER.index(minimum) :])
    rows = jsonl("--sink", f"sqlite:{stores.sqlite}", "--format", "jsonl", "--severity", minimum)
    assert {row["severity"] for row in rows} <= admitted
    assert len(rows) == sum(1 for f in expected if f["severity"] in admitted)
    assert rows  # the tenant has findings of every severity the policy gives


def test_since_takes_iso_times_and_durations(stores: Stores, tmp_path: Path) -> None:
    # A copy of the real store with half its verdicts moved back to 2020.
    store = tmp_path / "aged.sqlite"
    with sqlite3.connect(stores.sqlite) as source, sqlite3.connect(store) as target:
        source.backup(target)
    with sqlite3.connect(store) as db:
        old = dt.datetime(2020, 6, 1, tzinfo=dt.UTC).timestamp()
        db.execute("UPDATE verdicts SET processed_at = ? WHERE id % 2 = 0", (old,))
        (recent,) = db.execute(
            "SELECT count(*) FROM verdicts AS v, json_each(v.findings) WHERE v.id % 2 = 1"
        ).fetchone()
    everything = len(stored(store))
    assert 0 < recent < everything
    for since in ("2021-01-01", "2021-01-01T00:00:00+00:00", "7d", "90m", "1h"):
        assert len(jsonl("--sink", f"sqlite:{store}", "--format", "jsonl", "--since", since)) == (
            recent
        ), since
    assert len(
        jsonl("--sink", f"sqlite:{store}", "--format", "jsonl", "--since", "2019-12-31")
    ) == (everything)
    assert jsonl("--sink", f"sqlite:{store}", "--format", "jsonl", "--since", "2999-01-01") == []
    code, _, err = run("findings", "--sink", f"sqlite:{store}", "--since", "yesterday", check=False)
    assert code == 2
    assert "neither an ISO time" in err
    for too_far in ("3000000d", "99999999999d"):
        code, _, err = run("findings", "--sink", f"sqlite:{store}", "--since", too_far, check=False)
        assert code == 2
        assert "reaches back before the year 1" in err
        assert "Traceback" not in err


def test_a_jsonl_store_with_fields_not_graphtaps_is_one_clear_line(tmp_path: Path) -> None:
    store = tmp_path / "verdicts.jsonl"
    store.write_text(json.dumps({"verdict_key": "k", "findings": ["not an object"]}) + "\n")
    code, _, err = run("findings", "--sink", f"jsonl:{store}", check=False)
    assert code == 1
    assert "not a graphtap JSONL verdict store" in err
    assert "Traceback" not in err


def test_csv_and_table(stores: Stores) -> None:
    expected = stored(stores.sqlite)
    out = run("findings", "--sink", f"sqlite:{stores.sqlite}", "--format", "csv")[1]
    reader = csv.DictReader(io.StringIO(out))
    assert tuple(reader.fieldnames or ()) == FIELDS
    rows = list(reader)
    assert len(rows) == len(expected)
    assert {r["preview"] for r in rows} == {str(f["preview"]) for f in expected}

    table = run("findings", "--sink", f"sqlite:{stores.sqlite}", "--type", "password")[1]
    assert "(values masked)" in table
    for header in ("time (UTC)", "severity", "type", "confidence", "preview", "conversation"):
        assert header in table
    passwords = [f for f in expected if f["type"] == "password"]
    assert table.count(" password ") == len(passwords)
    assert all(str(f["preview"]) in table for f in passwords)
    none = run("findings", "--sink", f"sqlite:{stores.sqlite}", "--since", "2999-01-01")[1]
    assert "No findings" in none


def test_a_jsonl_store_lists_the_same(stores: Stores) -> None:
    from_sqlite = jsonl("--sink", f"sqlite:{stores.sqlite}", "--format", "jsonl")
    from_jsonl = jsonl("--sink", f"jsonl:{stores.jsonl}", "--format", "jsonl")
    key = lambda r: (r["verdict_key"], r["value_hash"])  # noqa: E731
    assert sorted(map(key, from_jsonl)) == sorted(map(key, from_sqlite))
    high = jsonl("--sink", f"jsonl:{stores.jsonl}", "--format", "jsonl", "--severity", "high")
    assert {r["severity"] for r in high} <= {"high", "critical"}
    assert len(high) == sum(1 for r in from_sqlite if r["severity"] in ("high", "critical"))


def test_the_store_is_only_read(stores: Stores, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    with sqlite3.connect(stores.sqlite) as source, sqlite3.connect(store) as target:
        source.backup(target)
    # A store from before the two truncation columns: `process` would add them, this may not.
    with sqlite3.connect(store) as db:
        db.execute("ALTER TABLE verdicts DROP COLUMN findings_truncated")
        db.execute("ALTER TABLE verdicts DROP COLUMN finding_total")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    rows = jsonl("--sink", f"sqlite:{store}", "--format", "jsonl")
    assert len(rows) == len(stored(stores.sqlite))
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    with sqlite3.connect(store) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(verdicts)")}
    assert "finding_total" not in columns


def test_missing_damaged_and_foreign_stores_are_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is no database" * 200)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE things (x)")
    cases = {
        f"sqlite:{tmp_path / 'missing.sqlite'}": "does not exist",
        f"sqlite:{garbage}": "not a SQLite database",
        f"sqlite:{foreign}": "not a graphtap verdict store",
        f"jsonl:{tmp_path / 'missing.jsonl'}": "does not exist",
    }
    for sink, message in cases.items():
        code, out, err = run("findings", "--sink", sink, check=False)
        assert code == 1, (sink, err)
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert message in err
        assert "Traceback" not in err
    assert garbage.read_bytes() == b"this is no database" * 200
    code, _, err = run("findings", "--sink", "postgres:x", check=False)
    assert code == 2
    assert "sqlite:FILE or jsonl:FILE" in err


def test_parse_since() -> None:
    now = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    assert parse_since("30m", now=now) == (now - dt.timedelta(minutes=30)).timestamp()
    assert parse_since("1h", now=now) == (now - dt.timedelta(hours=1)).timestamp()
    assert parse_since("7d", now=now) == (now - dt.timedelta(days=7)).timestamp()
    assert parse_since("2026-01-05T08:00", now=now) == (now - dt.timedelta(hours=1)).timestamp()
    assert (
        parse_since("2026-01-05T10:00+02:00", now=now) == (now - dt.timedelta(hours=1)).timestamp()
    )
    with pytest.raises(ValueError, match="neither"):
        parse_since("1 fortnight", now=now)
