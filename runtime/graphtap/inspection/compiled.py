"""Compiled Hyperscan databases, kept on disk from one process to the next.

Compiling the detectors takes a quarter of a second, and every process that runs the
pipeline compiles the same database: each `--workers` process, each Function App cold start,
each reload after a key rotation. A database is compiled once, serialized under a key of
everything that shapes it (the expressions, their flags and ids, Hyperscan's version and
this CPU), and the next process loads it in milliseconds.

The cache is `$GRAPHTAP_CACHE_DIR`, else `$XDG_CACHE_HOME/graphtap`, else
`~/.cache/graphtap`; `GRAPHTAP_CACHE_DIR=off` compiles every time. A file that is unreadable,
damaged or from another build is compiled over; a cache that cannot be written costs only
the time. Files are written whole (a temporary file, then a rename), owner-only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV = "GRAPHTAP_CACHE_DIR"
_DIGEST = hashlib.sha256().digest_size


def cache_dir() -> Path | None:
    """Where compiled databases are kept, or None when caching is off."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return None if configured.lower() == "off" else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphtap"


def database(
    hyperscan: Any, expressions: Sequence[bytes], flags: Sequence[int], ids: Sequence[int]
) -> Any:
    """The block-mode database of these expressions: loaded from the cache when it holds
    one compiled from exactly these inputs on this kind of CPU, else compiled (and kept)."""
    folder = cache_dir()
    if folder is None:
        return _compiled(hyperscan, expressions, flags, ids)
    path = folder / f"hyperscan-{_key(hyperscan, expressions, flags, ids)}.db"
    database = _load(hyperscan, path)
    if database is None:
        database = _compiled(hyperscan, expressions, flags, ids)
        _store(path, hyperscan.dumpb(database))
    return database


def _compiled(
    hyperscan: Any, expressions: Sequence[bytes], flags: Sequence[int], ids: Sequence[int]
) -> Any:
    database = hyperscan.Database()
    database.compile(
        expressions=list(expressions), ids=list(ids), elements=len(ids), flags=list(flags)
    )
    return database


def _key(
    hyperscan: Any, expressions: Sequence[bytes], flags: Sequence[int], ids: Sequence[int]
) -> str:
    digest = hashlib.sha256()
    for part in (hyperscan.__version__, platform.machine(), _cpu_flags()):
        digest.update(part.encode() + b"\0")
    for expression, flag, identifier in zip(expressions, flags, ids, strict=True):
        digest.update(b"%d:%d:%d:" % (identifier, flag, len(expression)) + expression)
    return digest.hexdigest()[:32]


@cache
def _cpu_flags() -> str:
    """The CPU's feature flags: Hyperscan compiles for the instructions this CPU has."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _load(hyperscan: Any, path: Path) -> Any | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning(
            "compiled detectors unreadable; compiling",
            extra={"path": str(path), "error": str(error)},
        )
        return None
    digest, serialized = data[:_DIGEST], data[_DIGEST:]
    if hashlib.sha256(serialized).digest() != digest:
        log.warning("compiled detectors damaged; compiling", extra={"path": str(path)})
        return None
    try:
        return hyperscan.loadb(serialized, hyperscan.HS_MODE_BLOCK)
    except hyperscan.error as error:
        log.warning(
            "compiled detectors not loadable; compiling",
            extra={"path": str(path), "error": str(error)},
        )
        return None


def _store(path: Path, serialized: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".hyperscan-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(hashlib.sha256(serialized).digest() + serialized)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        log.info("compiled detectors not cached", extra={"path": str(path), "error": str(error)})
