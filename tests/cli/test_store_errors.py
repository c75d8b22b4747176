"""Damaged, read-only and full stores, and input that is not UTF-8: one clear line, a non-zero
exit, no traceback and no checkpoint moved."""

from __future__ import annotations

import resource
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHub

from ..processing.test_store_integrity import checkpointed, damage, read_only
from .conftest import GRAPHTAP, graphtap, simulate

STATE = "cli-client-state-0123456789"


@pytest.fixture(scope="module")
def hub(cli_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("store-errors") / "hub"
    simulate(
        cli_keys,
        STATE,
        150,
        "--hub",
        f"local:{directory}",
    )
    return directory


def process(
    cli_keys: Path, source: str, sink: str, *, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if file_size_limit is not None:  # writes past it fail as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [
            str(GRAPHTAP),
            "process",
            "--source",
            source,
            "--keys",
            str(cli_keys),
            "--client-state",
            STATE,
            "--sink",
            sink,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=limit,
    )


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exactly one `Error:` line and no traceback; return that line."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def checkpoints(hub: Path) -> list[int | None]:
    with LocalHub(hub, create=False) as local:
        return [
            local.checkpoint_of(DEFAULT_CONSUMER_GROUP, p) for p in range(local.partition_count)
        ]


def test_a_damaged_sink_is_refused(cli_keys: Path, hub: Path, tmp_path: Path) -> None:
    copy = tmp_path / "hub"
    shutil.copytree(hub, copy)
    sink = tmp_path / "verdicts.sqlite"
    assert process(cli_keys, f"local:{copy}", f"sqlite:{sink}").returncode == 0
    checkpointed(sink)
    damaged = damage(sink)
    line = one_error(process(cli_keys, f"local:{hub}", f"sqlite:{sink}"))
    assert str(sink) in line
    assert "move it aside" in line
    assert sink.read_bytes() == damaged
    assert checkpoints(hub) == [None] * 4


def test_a_damaged_hub_is_refused(cli_keys: Path, hub: Path, tmp_path: Path) -> None:
    copy = tmp_path / "hub"
    shutil.copytree(hub, copy)
    checkpointed(copy / "hub.sqlite")
    damage(copy / "hub.sqlite")
    line = one_error(process(cli_keys, f"local:{copy}", f"sqlite:{tmp_path / 'v.sqlite'}"))
    assert f"local hub {copy / 'hub.sqlite'}" in line
    assert "move it aside" in line


def test_a_read_only_sink_is_refused(cli_keys: Path, hub: Path, tmp_path: Path) -> None:
    sink = tmp_path / "verdicts.sqlite"
    with sqlite3.connect(sink) as db:
        db.execute("CREATE TABLE t (x)")
    with read_only(sink):
        line = one_error(process(cli_keys, f"local:{hub}", f"sqlite:{sink}"))
    assert str(sink) in line
    assert "writable" in line
    assert checkpoints(hub) == [None] * 4


def test_a_full_disk_stops_the_run_and_loses_nothing(
    cli_keys: Path, hub: Path, tmp_path: Path
) -> None:
    """Batches committed before the disk filled stay checkpointed; the one it refused is not,
    so the next run gives exactly the verdicts an undisturbed run gives."""
    clean, full = tmp_path / "clean", tmp_path / "full"
    shutil.copytree(hub, clean)
    shutil.copytree(hub, full)
    sink = tmp_path / "verdicts.sqlite"
    line = one_error(process(cli_keys, f"local:{full}", f"sqlite:{sink}", file_size_limit=100_000))
    assert str(sink) in line
    assert "disk" in line
    assert checkpoints(full) != checkpoints(hub)  # some batches were durable before
    assert None in checkpoints(full)  # and the refused one was not checkpointed
    again = process(cli_keys, f"local:{full}", f"sqlite:{sink}")
    assert again.returncode == 0, again.stderr
    reference = tmp_path / "reference.sqlite"
    assert process(cli_keys, f"local:{clean}", f"sqlite:{reference}").returncode == 0
    assert verdict_keys(sink) == verdict_keys(reference)
    assert checkpoints(full) == checkpoints(clean)


def verdict_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT verdict_key FROM verdicts"))


def test_a_jsonl_store_that_is_not_graphtaps_is_refused(
    cli_keys: Path, hub: Path, tmp_path: Path
) -> None:
    sink = tmp_path / "verdicts.jsonl"
    sink.write_bytes(b'{"verdict_key": "a"}\n\xff\xfe not utf-8\n')
    line = one_error(process(cli_keys, f"local:{hub}", f"jsonl:{sink}"))
    assert str(sink) in line
    assert "refusing to append" in line


def test_inspect_refuses_input_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.html"
    path.write_bytes("<p>Kartennummer für Zahlung: 4111 1111 1111 1111</p>".encode("latin-1"))
    line = one_error(graphtap("inspect", path, check=False))
    assert str(path) in line
    assert "not UTF-8" in line
    lines = tmp_path / "lines.jsonl"
    lines.write_bytes(b'{"id": 1, "content": "fine"}\n\xff\xfe\n')
    result = graphtap("inspect", "--jsonl", lines, check=False)
    assert one_error(result) == "Error: 1 input line(s) could not be inspected"
    assert "line 2 is not UTF-8" in result.stderr
    assert '"id": 1' in result.stdout  # the good line was still inspected


def test_serve_refuses_a_damaged_sink_before_serving(
    cli_keys: Path, hub: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "hub"
    shutil.copytree(hub, copy)
    sink = tmp_path / "verdicts.sqlite"
    assert process(cli_keys, f"local:{copy}", f"sqlite:{sink}").returncode == 0
    checkpointed(sink)
    damage(sink)
    before = checkpoints(copy)
    result = subprocess.run(
        [
            str(GRAPHTAP),
            "serve",
            "--source",
            f"local:{copy}",
            "--keys",
            str(cli_keys),
            "--client-state",
            STATE,
            "--sink",
            f"sqlite:{sink}",
            "--port",
            "1",  # never bound: the stores are checked first
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert str(sink) in one_error(result)
    assert checkpoints(copy) == before
