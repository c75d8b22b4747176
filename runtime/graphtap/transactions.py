"""SQLite write transactions, taken the same way by every local store, and the checks every
local store runs when it opens a file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception: concurrent writers queue for the
    lock instead of failing half-way. `db` runs in autocommit mode (`isolation_level=None`)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


#: Stores up to this size are read whole by `PRAGMA quick_check` when opened (well under a
#: second); larger ones get the header and schema checks, which cost the same at any size.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024


class StoreError(RuntimeError):
    """A local SQLite store that cannot be used: damaged, not a database, read-only, full.

    The message names the file, what went wrong and what to do; nothing was written."""


def open_store(path: Path, what: str, *pragmas: str, schema: str = "") -> sqlite3.Connection:
    """A local store's connection: its folder made, the file checked (`check_store`), WAL
    with FULL synchronous commits, then `pragmas` and `schema`. Any failure closes it again
    and is one `StoreError` naming the file and what to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise store_error(path, what, exc) from None
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        check_store(db, path, what)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the checkpoint that depends on it moves.
        db.execute("PRAGMA synchronous=FULL")
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
        db.executescript(schema)
    except BaseException as exc:
        db.close()
        if isinstance(exc, sqlite3.Error):
            raise store_error(path, what, exc) from None
        raise
    return db


def check_store(db: sqlite3.Connection, path: Path, what: str) -> None:
    """Refuse a damaged or read-only store at open, at bounded cost: the header and schema,
    `PRAGMA quick_check` (every page) for files up to `QUICK_CHECK_MAX_BYTES`, and one write
    of the header.

    The file is read only through SQLite: opening and closing it with another descriptor
    would drop every POSIX lock this process holds on it (SQLite's included), and a reader
    elsewhere could then delete a write-ahead log still in use."""
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        size = path.stat().st_size if path.exists() else 0
        if size <= QUICK_CHECK_MAX_BYTES:
            problems = [
                " ".join(str(row[0]).split()) for row in db.execute("PRAGMA quick_check(3)")
            ]
            if problems != ["ok"]:
                raise StoreError(
                    f"{what} {path} is damaged ({'; '.join(problems)[:300]}): {_DAMAGED_HINT}"
                )
        # Rewrite the header's user version with its own value: a read-only file (or folder)
        # is refused now, not after a batch has been processed.
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute(f"PRAGMA user_version = {version}")
    except sqlite3.DatabaseError as exc:
        raise store_error(path, what, exc) from None


def store_error(path: Path, what: str, exc: BaseException) -> StoreError:
    """One line for an SQLite or OS error on a store: the file, the error, what to do."""
    text = (
        str(exc) if isinstance(exc, sqlite3.Error) else (getattr(exc, "strerror", None) or str(exc))
    )
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        hint = "make the file and its folder writable for this process, then run again"
    elif "full" in lowered or "no space" in lowered or "too large" in lowered:
        hint = "free disk space, then run again (nothing was checkpointed)"
    elif "not a database" in lowered:
        return StoreError(
            f"{what} {path} is not a SQLite database (or is damaged): {_DAMAGED_HINT}"
        )
    elif "malformed" in lowered or "corrupt" in lowered:
        hint = _DAMAGED_HINT
    elif "i/o error" in lowered:
        hint = (
            "the disk refused a write (is it full, or over a size limit?): fix it, then run again"
        )
    else:
        hint = "fix the cause, then run again"
    return StoreError(f"{what} {path}: {' '.join(text.split())}; {hint}")


_DAMAGED_HINT = (
    "move it aside (or restore it from a backup) and run again; graphtap starts a new one "
    "where none exists"
)
