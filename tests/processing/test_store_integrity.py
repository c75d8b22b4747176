"""Local stores refuse a damaged, foreign or read-only file when they open it, untouched."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from graphtap.localhub import LocalHub, LocalHubUnusable
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.verdicts import Verdict, verdict_key
from graphtap.transactions import StoreError


def verdicts(count: int) -> list[Verdict]:
    return [
        Verdict(
            key=verdict_key("t", f"r{n}", f"m{n}", "created", str(n)),
            tenant_id="t",
            subscription_id="s",
            change_type="created",
            resource=f"r{n}",
            message_id=f"m{n}",
            conversation_id="c",
            version=str(n),
            sender_id="u",
            content="inspected",
            severity="none",
            findings=(),
            certificate_id="cert",
            partition="0",
            offset=n,
            processed_at=0.0,
        )
        for n in range(count)
    ]


def damage(path: Path) -> bytes:
    """Overwrite a page in the middle of a database file; return the damaged bytes."""
    size = path.stat().st_size
    assert size > 16 * 4096, "the store must span many pages"
    with path.open("r+b") as file:
        file.seek((size // 4096 // 2) * 4096)
        file.write(b"\x13" * 8192)
    return path.read_bytes()


def checkpointed(path: Path) -> None:
    """Fold the write-ahead log into the file, so the file alone holds every page."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """A file nobody may write, root included (the immutable attribute), else by mode."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: no way to make a file read-only")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not permitted here: {done.stderr.decode().strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
            path.chmod(0o644)


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite"
    path.write_text("verdict,severity\n1,none\n")
    with pytest.raises(StoreError, match=f"{path} is not a SQLite database .*: move it aside"):
        SqliteStore(path)
    assert path.read_text() == "verdict,severity\n1,none\n"


def test_a_damaged_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite"
    store = SqliteStore(path)
    store.write_verdicts(verdicts(2000))
    store.close()
    checkpointed(path)
    damaged = damage(path)
    with pytest.raises(StoreError, match=f"verdict store {path}.*(damaged|malformed).*move it"):
        SqliteStore(path)
    assert path.read_bytes() == damaged


def test_a_read_only_store_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite"
    store = SqliteStore(path)
    store.write_verdicts(verdicts(3))
    store.close()
    checkpointed(path)
    before = path.read_bytes()
    with read_only(path), pytest.raises(StoreError, match=f"{path}.*writable"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_a_damaged_local_hub_is_refused(tmp_path: Path) -> None:
    with LocalHub(tmp_path / "hub", partitions=2) as hub:
        hub.send([b"x" * 3000 for _ in range(60)])
    checkpointed(tmp_path / "hub" / "hub.sqlite")
    damage(tmp_path / "hub" / "hub.sqlite")
    with pytest.raises(LocalHubUnusable, match=r"local hub .*hub\.sqlite.*move it aside"):
        LocalHub(tmp_path / "hub", create=False)


def test_a_foreign_file_as_lifecycle_queue_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lifecycle.sqlite"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(StoreError, match=f"lifecycle queue {path} is not a SQLite database"):
        LifecycleQueue(path)


def test_a_sound_store_reopens(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite"
    store = SqliteStore(path)
    assert store.write_verdicts(verdicts(50)) == 50
    store.close()
    again = SqliteStore(path)
    assert again.write_verdicts(verdicts(51)) == 1
    again.close()


def test_a_second_store_on_the_same_file_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    """The verdict store and the lifecycle queue share a file: opening the second must not
    drop the first's locks, or a reader elsewhere deletes the write-ahead log in use."""
    path = tmp_path / "v.sqlite"
    store = SqliteStore(path)
    queue = LifecycleQueue(path)
    reader = (
        "import sqlite3, sys; "
        "print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])"
    )
    count = [sys.executable, "-c", reader, str(path), "SELECT COUNT(*) FROM verdicts"]
    try:
        store.write_verdicts(verdicts(1))
        assert subprocess.run(count, capture_output=True, text=True, check=True).stdout == "1\n"
        assert (tmp_path / "v.sqlite-wal").exists()
        store.write_verdicts(verdicts(2))
        assert subprocess.run(count, capture_output=True, text=True, check=True).stdout == "2\n"
    finally:
        queue.close()
        store.close()


def test_a_full_disk_under_a_jsonl_store_is_one_clear_error(tmp_path: Path) -> None:
    """Writes past the file size limit fail as on a full disk: a StoreError naming the file."""
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from graphtap.processing.sinks.jsonl import JsonlVerdictSink\n"
        "from graphtap.transactions import StoreError\n"
        "from tests.processing.test_store_integrity import verdicts\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
        "sink = JsonlVerdictSink(Path(sys.argv[1]))\n"
        "try:\n"
        "    sink.write_verdicts(verdicts(200))\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    path = tmp_path / "verdicts.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.startswith(f"JSONL store {path}: File too large;")
    assert "free disk space" in done.stdout
