"""The CLI as users call it: keys, simulate, process, demo."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from .conftest import graphtap, simulate

CLIENT_STATE = "cli-client-state"


@pytest.mark.parametrize(
    "command", [[], ["keys"], ["keys", "create"], ["simulate"], ["process"], ["demo"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = graphtap(*command, "--help")
    assert "Usage: graphtap" in result.stdout


def test_keys_create_prints_id_and_thumbprint(tmp_path: Path) -> None:
    result = graphtap("keys", "create", "--out", tmp_path, "--bits", "3072")
    certificate_id = re.search(r"certificate id: (\S+)", result.stdout)
    thumbprint = re.search(r"thumbprint:\s+([0-9A-F]{40})\b", result.stdout)
    assert certificate_id
    assert thumbprint
    key = tmp_path / f"{certificate_id.group(1)}.key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / f"{certificate_id.group(1)}.cert.pem").exists()


def test_simulate_to_jsonl_then_process_to_jsonl(cli_keys: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    out = simulate(
        cli_keys,
        CLIENT_STATE,
        150,
        "--out",
        events,
        "--seed",
        "5",
        "--fault-share",
        "0.05",
    ).stdout
    changes = int(re.search(r"(\d+) changes", out).group(1))  # type: ignore[union-attr]
    faulty = int(re.search(r"(\d+) faulty", out).group(1))  # type: ignore[union-attr]
    assert changes + faulty == 150
    first_line = json.loads(events.read_text().splitlines()[0])
    assert first_line["value"][0]["subscriptionId"] == "NA"  # Graph's validation event comes first

    verdicts = tmp_path / "verdicts.jsonl"
    dead = tmp_path / "dead.jsonl"
    result = graphtap(
        "process",
        "--source",
        f"jsonl:{events}",
        "--keys",
        cli_keys,
        "--client-state",
        CLIENT_STATE,
        "--client-state",
        "older-state",
        "--sink",
        f"jsonl:{verdicts}",
        "--dead-letter",
        f"jsonl:{dead}",
        "--json",
    )
    summary = json.loads(result.stdout)
    assert summary["verdicts"] == changes
    assert summary["validation_skipped"] == 2
    assert sum(summary["dead_letters_by_reason"].values()) == faulty
    records = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert len(records) == changes
    for record in records:
        assert {
            "tenant_id",
            "subscription_id",
            "change_type",
            "resource",
            "message_id",
            "findings",
        } <= set(record)
        for finding in record["findings"]:
            assert {"type", "confidence", "count", "preview"} <= set(finding)
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    bodies = {r["event_key"]: r["body"] for r in records if "body" in r}
    letters = [r for r in records if "dead_letter_key" in r]
    assert sum(letter["item_count"] for letter in letters) == faulty
    assert all(letter["reason"] and letter["event_key"] in bodies for letter in letters)
    assert CLIENT_STATE not in verdicts.read_text()
    assert CLIENT_STATE not in dead.read_text()

    again = json.loads(
        graphtap(
            "process",
            "--source",
            f"jsonl:{events}",
            "--keys",
            cli_keys,
            "--client-state",
            CLIENT_STATE,
            "--sink",
            f"jsonl:{verdicts}",
            "--dead-letter",
            f"jsonl:{dead}",
            "--json",
        ).stdout
    )
    assert again["verdicts"] == 0
    assert again["duplicate_verdicts"] == changes
    assert len(verdicts.read_text().splitlines()) == changes


def test_process_with_workers_on_a_local_hub(cli_keys: Path, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    simulate(
        cli_keys,
        CLIENT_STATE,
        300,
        "--hub",
        f"local:{hub}",
        "--partitions",
        "4",
    )
    result = graphtap(
        "process",
        "--source",
        f"local:{hub}",
        "--keys",
        cli_keys / "cli-cert.key.pem",
        "--client-state",
        CLIENT_STATE,
        "--sink",
        f"sqlite:{tmp_path / 'v.sqlite'}",
        "--workers",
        "2",
    )
    assert "notifications per second" in result.stdout
    assert "verdicts" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "kafka:x"], "local:PATH, jsonl:PATH"),
        (["--sink", "postgres:x"], "sqlite:PATH, jsonl:PATH"),
        (["--source", "local:/nonexistent-hub"], "no local hub"),
    ],
)
def test_process_explains_bad_arguments(
    cli_keys: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = {
        "--source": f"jsonl:{tmp_path / 'x.jsonl'}",
        "--sink": f"sqlite:{tmp_path / 'v.sqlite'}",
    }
    (tmp_path / "x.jsonl").write_text("")
    base[args[0]] = args[1]
    result = graphtap(
        "process",
        "--keys",
        cli_keys,
        "--client-state",
        "s",
        *[v for kv in base.items() for v in kv],
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_demo_runs_the_whole_local_path(tmp_path: Path) -> None:
    result = graphtap("demo", "--workdir", tmp_path / "demo", "--count", "400", "--workers", "2")
    assert "graphtap processor summary" in result.stdout
    assert "finding: " in result.stdout
    assert "dead letter: " in result.stdout
    # Enforcement in dry run: what would have been done, recorded on the verdicts only.
    assert "enforcement in dry run" in result.stdout
    with sqlite3.connect(tmp_path / "demo" / "verdicts.sqlite") as db:
        states = {
            (json.loads(row[0])["action"], json.loads(row[0])["state"])
            for row in db.execute("SELECT action FROM verdicts WHERE action IS NOT NULL")
        }
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert ("block", "dry_run") in states
    assert {state for _, state in states} == {"dry_run"}
    assert "actions" not in tables  # nothing was queued for Graph
    again = graphtap("demo", "--workdir", tmp_path / "demo", "--count", "50")
    assert again.returncode == 0


def test_demo_refuses_to_wipe_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = graphtap("demo", "--workdir", tmp_path, check=False)
    assert result.returncode == 2
    assert (tmp_path / "precious.txt").exists()
