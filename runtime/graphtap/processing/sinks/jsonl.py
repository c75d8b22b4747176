"""JSONL files: one verdict (or dead letter) per line, for pipelines that tail files.

Appends are deduplicated by key (the keys already in the file are read at open) and
fsynced per batch. A crash can leave a torn last line; it is cut off at open, and its
record comes back with the replayed batch, since the checkpoint had not moved.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.verdicts import Verdict
from graphtap.transactions import store_error


class JsonlLog:
    """An append-only JSONL file that never holds two records with the same key.

    A record's key is its first field of `key_fields` present (a file may hold records of
    more than one kind)."""

    def __init__(self, path: Path, *key_fields: str) -> None:
        self.path = path
        self._key_fields = key_fields
        self._keys: set[str] = set()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._load_keys_and_cut_torn_tail()
            self._file = path.open("ab")
        except OSError as exc:
            raise store_error(path, "JSONL store", exc) from None

    def _key(self, record: dict[str, Any]) -> str:
        for name in self._key_fields:
            if name in record:
                return str(record[name])
        raise KeyError(f"record has none of the key fields {', '.join(self._key_fields)}")

    def _load_keys_and_cut_torn_tail(self) -> None:
        good_bytes = 0
        with self.path.open("rb") as existing:
            for line in existing:
                if not line.endswith(b"\n"):
                    break  # torn by a crash mid-append: its batch was never checkpointed
                try:
                    record = json.loads(line)
                    self._keys.add(self._key(record))
                except (ValueError, KeyError, TypeError):  # not UTF-8, not JSON, no key
                    raise ValueError(
                        f"{self.path}: line at byte {good_bytes} is not JSON or not one of "
                        "graphtap's records; refusing to append (move the file aside)"
                    ) from None
                good_bytes += len(line)
        if good_bytes != self.path.stat().st_size:
            os.truncate(self.path, good_bytes)

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        new: dict[str, bytes] = {}
        for record in records:
            key = self._key(record)
            if key not in self._keys and key not in new:
                new[key] = orjson.dumps(record) + b"\n"
        if new:
            size = os.fstat(self._file.fileno()).st_size  # every append ends flushed
            try:
                self._file.write(b"".join(new.values()))
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:  # a full disk: the batch is not checkpointed
                try:
                    self._cut_back(size)
                except OSError as cut:
                    raise store_error(self.path, "JSONL store", cut) from exc
                raise store_error(self.path, "JSONL store", exc) from None
            self._keys.update(new)
        return len(new)

    def _cut_back(self, size: int) -> None:
        """Remove what a failed append left in the file (a part may have been written, or
        all of it without its fsync): the batch comes again, and must not be there twice or
        glued to a torn line."""
        with contextlib.suppress(OSError):  # its unwritten bytes go with the cut below
            self._file.close()
        os.truncate(self.path, size)
        self._file = self.path.open("ab")

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def close(self) -> None:
        self._file.close()


class JsonlVerdictSink:
    def __init__(self, path: Path) -> None:
        self._log = JsonlLog(path, "verdict_key")

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        return self._log.append(v.to_dict() for v in verdicts)

    def close(self) -> None:
        self._log.close()


class JsonlDeadLetters:
    """Each event's body once (a record with `event_key` and `body`), before the letters
    (records with `dead_letter_key`) that refer to it; `graphtap deadletters replay` appends
    a record with `replay_key` for each letter it replayed."""

    def __init__(self, path: Path) -> None:
        self._log = JsonlLog(path, "dead_letter_key", "event_key", "replay_key")

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        events = {d.event.key: d.event for d in letters}
        new_events = sum(1 for key in events if key not in self._log)
        records = [e.to_dict() for e in events.values()] + [d.to_dict() for d in letters]
        return self._log.append(records) - new_events

    def close(self) -> None:
        self._log.close()
